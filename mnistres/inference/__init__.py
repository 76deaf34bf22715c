"""A trained checkpoint at work: rebuilt into a model (`trained`), evaluated, predicting the user's images
(`images` reads them), exported."""
