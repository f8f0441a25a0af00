"""Typed settings for the Flask service: the settings both services share (twinstack_runtime.settings)."""

from __future__ import annotations

from twinstack_runtime.settings import ServiceSettings


class Settings(ServiceSettings):
    """Nothing Flask-only yet; the class is where a Flask-only setting would go."""
