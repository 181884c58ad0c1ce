"""Training: the Lightning system, callbacks, trainer factory, run folders, the Experiment."""
