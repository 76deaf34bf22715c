"""`python -m mnistres.worker POINT.yaml --attempt ID`, the command every executor runs a sweep point with
(a public door: plugins' executors start it). The worker itself is `mnistres.sweep.worker`."""

import sys

from mnistres.sweep.worker import child, main, run_point

__all__ = ["child", "main", "run_point"]

if __name__ == "__main__":
    sys.exit(main())
