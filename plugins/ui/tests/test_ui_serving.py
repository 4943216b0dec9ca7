"""The models page's probe of a running `conveyor serve`: the answer of its GET /metadata."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from conveyor_ui.serving import served_model

# What conveyor-bentoml's /metadata answers (plugins/bentoml/src/conveyor_bentoml/service.py).
METADATA = {"model": "retail", "version": 3, "run_id": "20261124-201533-6a7b14",
            "input_schema": {"fields": []}}


class Metadata(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(METADATA).encode()
        self.send_response(200 if self.path == "/metadata" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_the_served_version_is_read_from_the_metadata_of_conveyor_serve():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        served = served_model(server.server_address[1])
    finally:
        server.shutdown()
    assert served["name"] == "retail" and served["version"] == 3
    assert served["run_id"] == "20261124-201533-6a7b14"


def test_nothing_listening_means_nothing_served():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Metadata)
    port = server.server_address[1]
    server.server_close()
    assert served_model(port) is None
