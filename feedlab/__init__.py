"""feedlab: A/B experimentation platform for feed recommenders."""

__version__ = "0.1.0"
