"""copydata: copy data management for databases on Pure Storage FlashArray."""

__version__ = "0.1.0"
