"""monitor_batches as conveyor-monitor's hand-written version 1 made it (the baseline of the
plugin's Alembic branch; `conveyor_monitor.records.TABLES` maps version 1 here).

The table and its indexes are made only where missing: stores from before the plugin declared
its tables have the same table from Conveyor's core schema (rows kept).

Revision ID: monitor_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "monitor_0001"
down_revision = None
branch_labels = ("conveyor-monitor",)
depends_on = None

T = sa.Text
D = sa.DOUBLE_PRECISION  # times and scores: PostgreSQL's REAL would lose seconds
I = sa.Integer  # noqa: E741


def upgrade() -> None:
    op.create_table(
        "monitor_batches", sa.Column("id", T, primary_key=True),
        sa.Column("model_name", T, nullable=False), sa.Column("model_version", I),
        sa.Column("source", T), sa.Column("source_sha256", T), sa.Column("rows", sa.BigInteger),
        sa.Column("created_at", D, nullable=False), sa.Column("status", T, nullable=False),
        sa.Column("drift_share", D), sa.Column("drifted_features", I), sa.Column("features", I),
        sa.Column("prediction_drift", D), sa.Column("prediction_drifted", I),
        sa.Column("labelled_rows", I), sa.Column("performance", T),
        sa.Column("performance_breached", I), sa.Column("feature_results", T),
        sa.Column("report_json", T), sa.Column("report_html", T), sa.Column("message", T),
        sa.Column("details", T), if_not_exists=True)
    op.create_index("monitor_batches_model", "monitor_batches", ["model_name", "created_at"],
                    if_not_exists=True)
    op.create_index("monitor_batches_source", "monitor_batches", ["source_sha256"],
                    if_not_exists=True)


def downgrade() -> None:
    op.drop_table("monitor_batches")
