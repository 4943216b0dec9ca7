"""Alembic environment of the store: runs on the connection `conveyor.store.migrate` hands over
(`config.attributes["connection"]`), inside its transaction, so a failing migration leaves the
store as it was (transactional DDL on SQLite and PostgreSQL). The core's revisions and the
plugins' branches (`conveyor.store.TableSet`) run here alike, each with its own version table
(`config.attributes["version_table"]`): a plugin ships no env.py."""

from alembic import context

from conveyor.store.schema import METADATA

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=METADATA,
                  version_table=context.config.attributes.get("version_table", "alembic_version"),
                  transactional_ddl=True, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
