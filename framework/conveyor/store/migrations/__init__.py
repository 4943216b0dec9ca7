"""Alembic migrations of the core store (env.py + versions/), applied by `conveyor.store.migrate`.

No alembic.ini is needed: `conveyor.store.migrate` builds the Alembic `Config` in code, over this
folder's `versions/` plus the version folders the plugins declare (`conveyor.store.TableSet`,
one Alembic branch per plugin).
"""
