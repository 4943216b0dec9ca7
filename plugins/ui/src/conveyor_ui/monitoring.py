"""The monitoring page's data. PLACEHOLDER until the monitoring store API is merged."""

from __future__ import annotations

from typing import Any

from conveyor.store import Store


def page(store: Store, params: Any) -> dict[str, Any]:
    return {"available": False}
