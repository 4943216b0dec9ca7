"""The store's schema as Conveyor's hand-written SCHEMA_VERSION 4 made it (the baseline: older
SQLite stores are brought to it by `conveyor.store.migrate` and stamped here).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = ("conveyor",)
depends_on = None

T = sa.Text
D = sa.Double
I = sa.Integer  # noqa: E741
B = sa.BigInteger


def upgrade() -> None:
    op.create_table("meta", sa.Column("key", T, primary_key=True), sa.Column("value", T))
    op.create_table(
        "runs", sa.Column("id", T, primary_key=True), sa.Column("project", T),
        sa.Column("status", T, nullable=False), sa.Column("created_at", D, nullable=False),
        sa.Column("finished_at", D), sa.Column("duration", D), sa.Column("pid", B),
        sa.Column("host", T), sa.Column("invocation", T), sa.Column("command", T),
        sa.Column("overrides", T), sa.Column("config", T), sa.Column("config_hash", T),
        sa.Column("git_commit", T), sa.Column("git_dirty", I), sa.Column("packages", T),
        sa.Column("error", T), sa.Column("exit_code", I), sa.Column("plugins", T))
    op.create_index("runs_created", "runs", ["created_at"])
    op.create_index("runs_invocation", "runs", ["invocation"])
    op.create_table(
        "stages", sa.Column("run_id", T, primary_key=True), sa.Column("name", T, primary_key=True),
        sa.Column("position", I), sa.Column("type", T), sa.Column("type_version", T),
        sa.Column("status", T, nullable=False), sa.Column("fingerprint", T),
        sa.Column("cached", I, server_default="0"), sa.Column("reason", T),
        sa.Column("started_at", D), sa.Column("duration", D), sa.Column("settings", T),
        sa.Column("upstream", T), sa.Column("files", T), sa.Column("outputs", T),
        sa.Column("error", T))
    op.create_index("stages_fingerprint", "stages", ["fingerprint", "status"])
    op.create_index("stages_name", "stages", ["name", "status", "started_at"])
    op.create_table("params", sa.Column("run_id", T, primary_key=True),
                    sa.Column("key", T, primary_key=True), sa.Column("value", T))
    op.create_table("metrics", sa.Column("run_id", T, primary_key=True),
                    sa.Column("stage", T, primary_key=True), sa.Column("key", T, primary_key=True),
                    sa.Column("value", D))
    op.create_table("artifacts", sa.Column("sha256", T, primary_key=True), sa.Column("size", B),
                    sa.Column("codec", T), sa.Column("suffix", T), sa.Column("created_at", D))
    op.create_table("run_artifacts", sa.Column("run_id", T, primary_key=True),
                    sa.Column("stage", T, primary_key=True), sa.Column("name", T, primary_key=True),
                    sa.Column("sha256", T))
    op.create_table("data_inputs", sa.Column("run_id", T, primary_key=True),
                    sa.Column("path", T, primary_key=True), sa.Column("sha256", T),
                    sa.Column("size", B))
    op.create_table("file_hashes", sa.Column("path", T, primary_key=True), sa.Column("size", B),
                    sa.Column("mtime_ns", B), sa.Column("inode", B), sa.Column("sha256", T))
    op.create_table(
        "model_versions", sa.Column("name", T, primary_key=True),
        sa.Column("version", I, primary_key=True), sa.Column("run_id", T), sa.Column("stage", T),
        sa.Column("artifact", T), sa.Column("metrics", T), sa.Column("gate", T),
        sa.Column("decision", T), sa.Column("config_hash", T), sa.Column("data", T),
        sa.Column("created_at", D))
    op.create_table("model_contracts", sa.Column("name", T, primary_key=True),
                    sa.Column("version", I, primary_key=True),
                    sa.Column("contract", T, nullable=False))
    op.create_table("aliases", sa.Column("name", T, primary_key=True),
                    sa.Column("alias", T, primary_key=True), sa.Column("version", I),
                    sa.Column("updated_at", D))
    op.create_table(
        "alias_history", sa.Column("id", I, primary_key=True, autoincrement=True),
        sa.Column("name", T), sa.Column("alias", T), sa.Column("version", I),
        sa.Column("previous", I), sa.Column("action", T), sa.Column("actor", T),
        sa.Column("reason", T), sa.Column("forced", I), sa.Column("at", D),
        sqlite_autoincrement=True)


def downgrade() -> None:
    for table in ("alias_history", "aliases", "model_contracts", "model_versions", "file_hashes",
                  "data_inputs", "run_artifacts", "artifacts", "metrics", "params", "stages",
                  "runs", "meta"):
        op.drop_table(table)
