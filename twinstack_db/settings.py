"""Where the database is, for both services and the migrator."""

from __future__ import annotations


def sqlalchemy_url(url: str) -> str:
    """TWINSTACK_DATABASE_URL (a libpq URL, postgresql://...) for SQLAlchemy with psycopg 3,
    one dialect for both kinds of engine: async (create_async_engine) and sync."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError("TWINSTACK_DATABASE_URL must be a postgresql:// URL")
    return f"postgresql+psycopg://{rest}"
