"""The core store's tables as SQLAlchemy Core `Table` objects in one `MetaData` (`METADATA`).

They describe the schema the Alembic migrations (`conveyor.store.migrations`) build, on SQLite
and PostgreSQL alike: times are Unix seconds in double precision (PostgreSQL's REAL would lose
seconds), sizes, inodes and nanosecond mtimes 64-bit integers, booleans integers 0/1, JSON
columns text. `data_inputs.sha256` holds each data file's version as the run recorded it: the
core's own sha256 (bare hex), or "ALGORITHM:HEX" from a `conveyor_file_fingerprint` plugin
("md5:..." is the file's DVC version with conveyor-dvc); the column's name predates the hook.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
)

METADATA = MetaData()


def _time(name: str, **kwargs: object) -> Column:
    return Column(name, Double(), **kwargs)


meta = Table("meta", METADATA, Column("key", Text, primary_key=True), Column("value", Text))

runs = Table(
    "runs", METADATA,
    Column("id", Text, primary_key=True), Column("project", Text),
    Column("status", Text, nullable=False), _time("created_at", nullable=False),
    _time("finished_at"), Column("duration", Double()), Column("pid", BigInteger),
    Column("host", Text), Column("invocation", Text), Column("command", Text),
    Column("overrides", Text), Column("config", Text), Column("config_hash", Text),
    Column("git_commit", Text), Column("git_dirty", Integer), Column("packages", Text),
    Column("error", Text), Column("exit_code", Integer), Column("plugins", Text),
    _time("heartbeat_at"), _time("lease_until"),
    Index("runs_created", "created_at"), Index("runs_invocation", "invocation"),
)

stages = Table(
    "stages", METADATA,
    Column("run_id", Text, primary_key=True), Column("name", Text, primary_key=True),
    Column("position", Integer), Column("type", Text), Column("type_version", Text),
    Column("status", Text, nullable=False), Column("fingerprint", Text),
    Column("cached", Integer, server_default="0"), Column("reason", Text),
    _time("started_at"), Column("duration", Double()), Column("settings", Text),
    Column("upstream", Text), Column("files", Text), Column("outputs", Text),
    Column("error", Text),
    Index("stages_fingerprint", "fingerprint", "status"),
    Index("stages_name", "name", "status", "started_at"),
)

params = Table("params", METADATA, Column("run_id", Text, primary_key=True),
               Column("key", Text, primary_key=True), Column("value", Text))

metrics = Table("metrics", METADATA, Column("run_id", Text, primary_key=True),
                Column("stage", Text, primary_key=True), Column("key", Text, primary_key=True),
                Column("value", Double()))

artifacts = Table("artifacts", METADATA, Column("sha256", Text, primary_key=True),
                  Column("size", BigInteger), Column("codec", Text), Column("suffix", Text),
                  _time("created_at"))

run_artifacts = Table("run_artifacts", METADATA, Column("run_id", Text, primary_key=True),
                      Column("stage", Text, primary_key=True),
                      Column("name", Text, primary_key=True), Column("sha256", Text))

data_inputs = Table("data_inputs", METADATA, Column("run_id", Text, primary_key=True),
                    Column("path", Text, primary_key=True), Column("sha256", Text),
                    Column("size", BigInteger))

file_hashes = Table("file_hashes", METADATA, Column("path", Text, primary_key=True),
                    Column("size", BigInteger), Column("mtime_ns", BigInteger),
                    Column("inode", BigInteger), Column("sha256", Text))

model_versions = Table(
    "model_versions", METADATA,
    Column("name", Text, primary_key=True), Column("version", Integer, primary_key=True),
    Column("run_id", Text), Column("stage", Text), Column("artifact", Text),
    Column("metrics", Text), Column("gate", Text), Column("decision", Text),
    Column("config_hash", Text), Column("data", Text), _time("created_at"),
)

model_contracts = Table("model_contracts", METADATA, Column("name", Text, primary_key=True),
                        Column("version", Integer, primary_key=True),
                        Column("contract", Text, nullable=False))

aliases = Table("aliases", METADATA, Column("name", Text, primary_key=True),
                Column("alias", Text, primary_key=True), Column("version", Integer),
                _time("updated_at"))

alias_history = Table(
    "alias_history", METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True), Column("name", Text),
    Column("alias", Text), Column("version", Integer), Column("previous", Integer),
    Column("action", Text), Column("actor", Text), Column("reason", Text),
    Column("forced", Integer), _time("at"),
    sqlite_autoincrement=True,
)

# How each version is scored (conveyor.compiled): its compiled form, or Python and why.
compiled_models = Table(
    "compiled_models", METADATA,
    Column("name", Text, primary_key=True), Column("version", Integer, primary_key=True),
    Column("served_by", Text, nullable=False), Column("reason", Text), Column("sha256", Text),
    Column("parity", Text), Column("converters", Text), _time("created_at"),
)
