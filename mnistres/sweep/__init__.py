"""Sweeps: planning and the sweep record (`plan`), the loop that drives every executor (`driver`), one point's
run (`worker`), the live view, and the Dask executor (`on_dask`)."""
