"""The version a running `conveyor serve` is serving, for the models page.

A server started by `conveyor serve` (conveyor-bentoml) answers GET /metadata on 127.0.0.1 at
`serve.port` (default 3000) with {"model": NAME, "version": N, "run_id": ..., "input_schema":
...}. The UI reads those keys (and the same ones nested under "model", for other servers) and
shows the rest raw.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

PROBE_TIMEOUT = 0.3
MAX_BYTES = 256 * 1024


def served_model(port: int, host: str = "127.0.0.1") -> dict[str, Any] | None:
    """What the server on `host:port` says it serves, or None when nothing answers there.

    The probe is short (a refused connection returns at once), so the models page never waits
    on a server that is not up."""
    url = f"http://{host}:{port}/metadata"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as response:
            body = response.read(MAX_BYTES)
    except (OSError, urllib.error.URLError, ValueError):
        return None
    try:
        metadata = json.loads(body)
    except ValueError:
        return {"url": url, "raw": body[:2000].decode("utf-8", "replace")}
    if not isinstance(metadata, dict):
        return {"url": url, "raw": json.dumps(metadata)[:2000]}
    model = metadata.get("model") if isinstance(metadata.get("model"), dict) else metadata
    name = model.get("name") or (metadata.get("model") if isinstance(metadata.get("model"), str)
                                 else None)
    return {"url": url, "name": name, "version": model.get("version"),
            "run_id": model.get("run_id"), "alias": model.get("alias"),
            "raw": json.dumps(metadata, indent=2, sort_keys=True, default=str)[:4000]}
