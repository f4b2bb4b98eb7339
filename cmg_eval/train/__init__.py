"""Pretraining of SRCID and its baselines: shared modules, losses, the trainer and the methods."""
