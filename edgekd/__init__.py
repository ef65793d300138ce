"""edgekd: distil, prune, quantize, export and measure a PyTorch classifier for one edge device."""

__version__ = "0.1.0"
