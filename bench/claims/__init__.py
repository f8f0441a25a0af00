"""One module per group of DESIGN.md claims; each function runs its experiment on a ``Lab``."""
