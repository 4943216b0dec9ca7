"""The first thing a request meets: only JSON is read, and only up to the size limit.

A pure ASGI middleware, so a refused request costs no parsing: a body that is not
`application/json` (a pickle, a form, no content type at all) gets 415 before a byte of it is
read, and one over the limit gets 413, from its Content-Length or, for a chunked body, as
soon as the bytes read so far pass the limit. A request for the other kind of model (/predict
while a recommender is served, /recommend while a classifier or regressor is) gets 409 naming
the endpoint to use (`state.refusal(path)`).
"""

from __future__ import annotations

import json
from typing import Any

JSON_TYPES = (b"application/json",)
BODIES = {"/predict": "a list of records",
          "/recommend": 'an object such as {"user_id": 42, "k": 10}'}


class RequestGuard:
    def __init__(self, app: Any, *, paths: tuple[str, ...], max_body_bytes: int,
                 state: Any = None) -> None:
        self.app = app
        self.state = state  # the service's State: no model loaded -> 503 naming why
        self.paths = frozenset(paths)
        self.max_body_bytes = int(max_body_bytes)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            if scope["type"] == "http" and scope["path"] == "/readyz" and \
                    self.state is not None and self.state.serving is None:
                # BentoML's own 503 says only that __is_ready__ returned False
                return await _refuse(send, 503, "not ready: no model is loaded: "
                                     + (self.state.error or "starting"))
            return await self.app(scope, receive, send)
        content_type = b""
        length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.split(b";", 1)[0].strip().lower()
            elif name == b"content-length":
                length = value
        if content_type not in JSON_TYPES:
            shown = content_type.decode("latin-1") or "none"
            body = BODIES.get(scope["path"], "JSON")
            return await _refuse(send, 415, f"content type {shown} is not accepted: send "
                                 f"application/json ({body}); nothing was read")
        if self.state is not None and self.state.serving is None:
            return await _refuse(send, 503, "no model is loaded: "
                                 + (self.state.error or "starting"))
        if self.state is not None and (refusal := self.state.refusal(scope["path"])):
            return await _refuse(send, 409, refusal)
        if length is not None:
            try:
                size = int(length)
            except ValueError:
                return await _refuse(send, 400, "Content-Length is not a number")
            if size > self.max_body_bytes:
                return await _refuse(send, 413, self._too_large(size))
        if self.state is None:
            return await self._pass(scope, receive, send, length is None)
        # Counted, so that shutting down waits for these before BentoML stops its batching.
        self.state.in_flight += 1
        try:
            await self._pass(scope, receive, send, length is None)
        finally:
            self.state.in_flight -= 1

    async def _pass(self, scope: dict[str, Any], receive: Any, send: Any, chunked: bool) -> None:
        if chunked:
            return await self._chunked(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _chunked(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # No Content-Length: read the body here, refusing it as soon as it passes the limit,
        # then hand it on whole (the service reads it whole anyway).
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body_bytes:
                return await _refuse(send, 413, self._too_large(seen))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: int) -> str:
        return (f"request body of {size} bytes or more is over the limit of "
                f"{self.max_body_bytes} bytes (serve.max_body_mb)")


async def _refuse(send: Any, status: int, message: str) -> None:
    await send_json(send, status, {"error": message})


async def read_body(receive: Any) -> bytes | None:
    """A request's whole body (the guard has bounded its size), or None when the client went
    away before sending it all (what the endpoints answered inside the guard read)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def send_json(send: Any, status: int, answer: Any) -> None:
    """One whole JSON response (what the guard refuses with, and /recommend answers)."""
    body = json.dumps(answer).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
