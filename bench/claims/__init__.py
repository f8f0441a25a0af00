"""One module per group of claims (verdicts.CLAIMS); each function runs its experiment on a ``Lab``."""
