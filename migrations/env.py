"""Alembic environment: migrates whatever DATABASE_URL names (default: the SQLite file)."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

from app.store.engine import build_engine
from app.models import Base
from config import database_url_from_env

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)

# Tests hand a URL over through the Alembic config; people use DATABASE_URL.
url = context.config.get_main_option("sqlalchemy.url") or database_url_from_env(os.environ)


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = build_engine(url, timeout=30)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            compare_type=True,
            # SQLite can only ALTER by copying tables; batch mode does that for us.
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
