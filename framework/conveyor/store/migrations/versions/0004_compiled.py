"""compiled_models: how each registered version is scored (`conveyor.compiled`): by its
compiled form ("onnx", ...) or by its Python model ("python", with the reason), the compiled
artifact's sha256, the parity gate's figures and the converter versions that built it.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("compiled_models"):
        # A store made before Alembic: its step to the baseline made every table of
        # conveyor.store.schema, this one included.
        return
    op.create_table(
        "compiled_models",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("served_by", sa.Text(), nullable=False), sa.Column("reason", sa.Text()),
        sa.Column("sha256", sa.Text()), sa.Column("parity", sa.Text()),
        sa.Column("converters", sa.Text()), sa.Column("created_at", sa.Double()),
    )


def downgrade() -> None:
    op.drop_table("compiled_models")
