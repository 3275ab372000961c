"""The engine every stage runs on: the run (accelerator, directory, sinks, signals, non-finite
policy), checkpoints, the optimizer step, and the one epoch/batch loop of supervised stages."""
