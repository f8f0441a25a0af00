"""Deployment targets beside the two runners of the repository's root (native mode, Compose)."""
