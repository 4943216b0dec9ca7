"""The lease of a running run: `runs.heartbeat_at`, renewed by a daemon thread while it runs.

    with Heartbeat(store, run_id, seconds=10):
        ...   # the run's stages

Each beat stamps `runs.heartbeat_at` and `runs.lease_until` (now + 3 x this run's
`store.heartbeat_seconds`) with the database's clock; a run whose lease has ended was killed,
on whatever machine it ran (readers compare with the database's clock too, so neither clock
skew nor a reader's own `store.heartbeat_seconds` matters): `Store.mark_interrupted` (called
before every run, by `conveyor runs` and the UI) marks it "interrupted". A missed renewal
(the database briefly unreachable) is retried at the next beat; the run's own writes report a
lasting outage.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from conveyor.errors import StoreError

if TYPE_CHECKING:
    from conveyor.store.db import Store

LEASE_BEATS = 3  # a run is presumed dead after this many missed heartbeats


class Heartbeat:
    """Renews `run_id`'s lease every `seconds` until stopped (a context manager)."""

    def __init__(self, store: Store, run_id: str, seconds: float) -> None:
        self.store, self.run_id, self.seconds = store, run_id, float(seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat {run_id}",
                                        daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.seconds):
            try:
                self.store.heartbeat(self.run_id, LEASE_BEATS * self.seconds)
            except StoreError:
                continue  # the database is unreachable now: try again at the next beat

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
