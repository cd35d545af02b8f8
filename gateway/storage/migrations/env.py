"""Alembic environment: runs against the engine handed over in the config."""

from alembic import context

from gateway.storage import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    context.run_migrations()
