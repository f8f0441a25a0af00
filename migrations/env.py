"""Alembic's environment: the models' metadata, the URL from the environment, one connection."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from twinstack_db.models import Base
from twinstack_db.settings import sqlalchemy_url

config = context.config


def run_migrations_online() -> None:
    url = sqlalchemy_url(os.environ["TWINSTACK_DATABASE_URL"])
    # NullPool: the migrator holds one connection while it runs, then none.
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
