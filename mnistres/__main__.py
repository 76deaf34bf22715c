# `python -m mnistres`: the current folder was already dropped from sys.path in __init__.py.
from mnistres.cli import main

if __name__ == "__main__":  # not when a process started by multiprocessing (Dask's workers) re-imports it
    main()
