"""The project store: a database (`.conveyor/store.db`, SQLite, or a PostgreSQL server a team
shares) and the artifacts (`.conveyor/artifacts/`).

Where it lives is `store.url` / `store.artifacts` (`conveyor.store.location`: command line >
`CONVEYOR_STORE_URL` / `CONVEYOR_STORE_ARTIFACTS` > conveyor.yaml > the project's own files):

    store:
      url: postgresql+psycopg://ml@db.internal:5432/conveyor   # password: PGPASSWORD or ~/.pgpass

`open_store(project_dir)` resolves them, connects (a bad URL is a ConfigError, exit 2, naming
the setting and its origin, the password masked) and brings the schema up to date with Alembic
(`conveyor.store.migrate`). The project's `.conveyor/` folder (`Store.root`) stays local
whatever the URL: scratch files, caches. A running run renews a lease (`runs.heartbeat_at`,
`store.heartbeat_seconds`), so one killed on any machine shows "interrupted"
(`conveyor.store.heartbeat`; `CONVEYOR_HOST_NAME` names the machine in containers and tests).
`conveyor.store.postgres_server` starts a throw-away PostgreSQL for tests (the `postgres_server`,
`postgres_url` and `store_url` fixtures of `conveyor.testing`).

`Store.lock(name)` holds a named lock across a long operation (a retraining decision), alone
among every process on every machine sharing the store, freed if its holder dies;
`Store.lock_held(name)` asks whether another process holds it (`conveyor.store.locks`,
`LockBusy` when `wait=False` finds it taken).

`Registry` is the model registry; `Runs` (module `conveyor.store.runs`) the record of runs
with their stages, params, metrics and data inputs. Plugins keep their own tables here,
declared as a `TableSet` (module `conveyor.store.tables`) through the `conveyor_store_tables`
hook, each an Alembic branch of its own, its revision in a version table of its own
(`TableSet.version_table`), that opening the store upgrades with the core's
(`Store.table_revision(owner)` says where it is): conveyor-monitor's monitored batches
(`conveyor_monitor.records`), conveyor-retrain's retraining decisions
(`conveyor_retrain.records`). `as_number` and `numeric_metrics` read
metric values back the way the listings do: a value damaged by hand or another tool is
flagged, never a crash.

`codec_for(codecs, value, stage=..., output=...)` picks the codec that stores a stage's output,
the runner's rule, for a plugin that stores outputs itself (`conveyor.StoredOutputs`).

`copy_store(source, dest_url)` (module `conveyor.store.copy`) copies a whole store into a new,
empty one, whatever the backends (`conveyor store copy --to URL`; the SQLite snapshot in a
Bento); `copy_artifacts` copies the artifact files to another artifact store.
"""

from conveyor.store.artifacts import ArtifactRef, ArtifactStore, codec_for, sha256_file
from conveyor.store.copy import CopySummary, copy_artifacts, copy_store
from conveyor.store.db import (
    Record,
    Store,
    StoreConnection,
    as_number,
    dumps,
    host_name,
    loads,
    numeric_metrics,
    open_store,
    process_alive,
)
from conveyor.store.locks import LockBusy
from conveyor.store.registry import AliasMoved, Registry
from conveyor.store.runs import (
    DataInput,
    MetricTest,
    MetricValue,
    ParamTest,
    RunQuery,
    Runs,
    StoredRun,
    StoredStage,
)
from conveyor.store.tables import TableSet

__all__ = [
    "AliasMoved",
    "ArtifactRef",
    "ArtifactStore",
    "CopySummary",
    "DataInput",
    "LockBusy",
    "MetricTest",
    "MetricValue",
    "ParamTest",
    "Record",
    "Registry",
    "RunQuery",
    "Runs",
    "Store",
    "StoreConnection",
    "StoredRun",
    "StoredStage",
    "TableSet",
    "as_number",
    "codec_for",
    "copy_artifacts",
    "copy_store",
    "dumps",
    "host_name",
    "loads",
    "numeric_metrics",
    "open_store",
    "process_alive",
    "sha256_file",
]
