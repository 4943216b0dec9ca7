"""runs.heartbeat_at: the lease a running run renews, so a run killed on any machine is seen
as interrupted (`Store.mark_interrupted`); on PostgreSQL the sequence `conveyor_data_version`
every write transaction advances (`Store.data_version`).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("heartbeat_at", sa.Double()))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE conveyor_data_version")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE conveyor_data_version")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
