"""Machine-learning jobs that a second peer can re-run and compare: specs, datasets, executors, canonical results."""
