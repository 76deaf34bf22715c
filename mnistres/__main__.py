# `python -m mnistres`: the current folder was already dropped from sys.path in __init__.py.
from mnistres.cli import main

main()
