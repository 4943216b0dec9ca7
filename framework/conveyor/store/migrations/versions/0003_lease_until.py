"""runs.lease_until: when a running run's lease ends, stamped by the run itself with the
database's clock (`Store.heartbeat`: the database's now + the run's own 3 x
`store.heartbeat_seconds`), so a reader on another machine, with another clock or another
`store.heartbeat_seconds`, judges the run by the run's lease and not by its own settings.
Rows from before it (NULL) are judged by `heartbeat_at` and the reader's lease.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("lease_until", sa.Double()))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease_until")
