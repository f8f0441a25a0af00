"""The lab: ``python -m bench`` (``make bench``) measures both serving models against their
physical limits and turns every claim (verdicts.CLAIMS) into a verdict, with charts."""
