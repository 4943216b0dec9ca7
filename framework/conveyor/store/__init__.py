"""The project store: `.conveyor/store.db` (SQLite, WAL) and `.conveyor/artifacts/`.

`Registry` is the model registry; `Runs` (module `conveyor.store.runs`) the record of runs
with their stages, params, metrics and data inputs; `Monitoring` (module
`conveyor.store.monitoring`) the record of monitored batches. `as_number` and
`numeric_metrics` read metric values back the way the listings do: a value damaged by hand or
another tool is flagged, never a crash.
"""

from conveyor.store.artifacts import ArtifactRef, ArtifactStore, sha256_file
from conveyor.store.db import Store, as_number, numeric_metrics, open_store
from conveyor.store.decisions import RetrainDecision, RetrainDecisions
from conveyor.store.monitoring import BatchRecord, Monitoring
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

__all__ = ["AliasMoved", "ArtifactRef", "ArtifactStore", "BatchRecord", "DataInput",
           "MetricTest", "MetricValue", "Monitoring", "ParamTest", "Registry", "RetrainDecision",
           "RetrainDecisions", "RunQuery", "Runs", "Store", "StoredRun", "StoredStage",
           "as_number", "numeric_metrics", "open_store", "sha256_file"]
