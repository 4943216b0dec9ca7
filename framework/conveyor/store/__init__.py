"""The project store: `.conveyor/store.db` (SQLite, WAL) and `.conveyor/artifacts/`.

`Registry` is the model registry; `Runs` (module `conveyor.store.runs`) the record of runs
with their stages, params, metrics and data inputs. Plugins keep their own tables here,
declared as a `TableSet` (module `conveyor.store.tables`) through the `conveyor_store_tables`
hook: conveyor-monitor's monitored batches (`conveyor_monitor.records`), conveyor-retrain's
retraining decisions (`conveyor_retrain.records`). `as_number` and `numeric_metrics` read
metric values back the way the listings do: a value damaged by hand or another tool is
flagged, never a crash.
"""

from conveyor.store.artifacts import ArtifactRef, ArtifactStore, sha256_file
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
    "DataInput",
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
    "dumps",
    "host_name",
    "loads",
    "numeric_metrics",
    "open_store",
    "process_alive",
    "sha256_file",
]
