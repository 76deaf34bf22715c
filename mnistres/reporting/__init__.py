"""The Markdown report and its figures, and reference figures to compare with."""
