"""reglens: how regularizers change what a CNN learns, how explainable and how robust it is."""

__version__ = "0.1.0"
