"""Alembic environment for the vbp-monitor warehouse."""
from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from vbp_monitor.model.schema import metadata

cfg = context.config
url = cfg.get_main_option("sqlalchemy.url")


def run_migrations() -> None:
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
