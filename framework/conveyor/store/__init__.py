"""The project store: `.conveyor/store.db` (SQLite, WAL) and `.conveyor/artifacts/`."""

from conveyor.store.artifacts import ArtifactRef, ArtifactStore
from conveyor.store.db import Store, open_store
from conveyor.store.decisions import RetrainDecision, RetrainDecisions
from conveyor.store.registry import AliasMoved, Registry

__all__ = ["AliasMoved", "ArtifactRef", "ArtifactStore", "Registry", "RetrainDecision",
           "RetrainDecisions", "Store", "open_store"]
