"""`mnistres serve`: a local page to draw digits on and browse runs, and the JSON API behind it."""
