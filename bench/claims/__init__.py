"""One module per group of claims (verdicts.CLAIMS). Each registers its experiments where they
are written (``@experiment`` of bench.registry) and runs them on a ``registry.Context``."""
