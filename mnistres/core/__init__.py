"""The ground floor: typing and echoing values, wording, YAML, writing to disk, locks, per-user places,
signals and the consoles. Nothing here knows about runs, models or sweeps."""
