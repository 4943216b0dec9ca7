"""The project store: `.conveyor/store.db` (SQLite, WAL) and `.conveyor/artifacts/`.

`Registry` is the model registry; `Monitoring` (module `conveyor.store.monitoring`) the record
of monitored batches.
"""

from conveyor.store.artifacts import ArtifactRef, ArtifactStore
from conveyor.store.db import Store, open_store
from conveyor.store.monitoring import BatchRecord, Monitoring
from conveyor.store.registry import Registry

__all__ = ["ArtifactRef", "ArtifactStore", "BatchRecord", "Monitoring", "Registry", "Store",
           "open_store"]
