"""cmg-eval: cross-modal generalization benchmarks for unified audio/video/text encoders."""

__version__ = "0.1.0"
