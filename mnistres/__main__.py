import os
import sys

# `python -m mnistres` puts the current folder first on sys.path; drop it, so that a file
# there can never shadow a plugin or a library (plugins from files load only when named).
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from mnistres.cli import main  # noqa: E402

main()
