"""The database both services share: the tables as SQLAlchemy 2 typed declarative models (one
module both import), the connection settings, and the connection budget. The schema is
Alembic's (migrations/): nothing here creates a table.
"""
