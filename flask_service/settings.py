"""Typed settings for the Flask service: the shared contract settings (twinstack_contract)."""

from __future__ import annotations

from twinstack_contract.settings import ServiceSettings


class Settings(ServiceSettings):
    """Nothing Flask-only yet; the class is where a Flask-only setting would go."""
