"""Readers of the release formats, manifests, and the synthetic benchmark generator."""
