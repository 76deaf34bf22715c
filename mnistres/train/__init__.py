"""One training run: the loop (`loop`), getting ready (`assemble`), steps, the run's record, checkpoints and
resuming, data, the model, metrics, weight averaging, devices and several processes."""
