"""retrain_decisions as conveyor-retrain's hand-written version 1 made it (the baseline of the
plugin's Alembic branch; `conveyor_retrain.records.TABLES` maps version 1 here).

The table and its index are made only where missing: stores from before the plugin declared
its tables have the same table from Conveyor's core schema (rows kept).

Revision ID: retrain_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "retrain_0001"
down_revision = None
branch_labels = ("conveyor-retrain",)
depends_on = None

T = sa.Text
D = sa.DOUBLE_PRECISION  # times: PostgreSQL's REAL would lose seconds
I = sa.Integer  # noqa: E741


def upgrade() -> None:
    op.create_table(
        "retrain_decisions", sa.Column("id", T, primary_key=True),
        sa.Column("model_name", T, nullable=False), sa.Column("created_at", D, nullable=False),
        sa.Column("outcome", T, nullable=False), sa.Column("reasons", T),
        sa.Column("trigger_batch", T), sa.Column("batches", T), sa.Column("forced", I),
        sa.Column("run_id", T), sa.Column("challenger_version", I),
        sa.Column("champion_version", I), sa.Column("metrics", T), sa.Column("details", T),
        sa.Column("finished_at", D), sa.Column("pid", I), sa.Column("host", T),
        if_not_exists=True)
    op.create_index("retrain_decisions_model", "retrain_decisions", ["model_name", "created_at"],
                    if_not_exists=True)


def downgrade() -> None:
    op.drop_table("retrain_decisions")
