"""The web application: a Starlette app rendering Jinja2 pages from the project store.

Security, in one place (`Guard`):
- bound to loopback (the default), a request whose Host header is not exactly one of
  `127.0.0.1`, `localhost` or `[::1]` with the served port is refused, so a web page elsewhere
  cannot reach the UI through DNS rebinding (`127.attacker.example` resolves wherever its owner
  likes);
- with a token (required off loopback), every request must carry it: header
  `X-Conveyor-Token` or `Authorization: Bearer`, or the cookie set when a browser opens the
  URL with `?token=` once (HttpOnly, SameSite=Strict);
- POST actions exist only with `--allow-actions`, need an Origin (or Referer) header equal to
  one of the server's configured addresses (never compared with the request's own Host), the
  server's CSRF token in the form, a confirmation field and a reason.
Static files come from a fixed table, never from a path in the URL: anything else is a 404.
"""

from __future__ import annotations

import getpass
import hmac
import importlib.util
import secrets
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from conveyor.errors import ConveyorError
from conveyor.secrets import scrub
from conveyor.store import Registry, Runs, Store, open_store
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import URL
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from conveyor_ui import monitoring, queries
from conveyor_ui.graph import layout, needs_of
from conveyor_ui.serving import served_model

HERE = Path(__file__).parent
TOKEN_COOKIE = "conveyor_ui_token"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")  # as they appear in a Host header or URL
WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", ""}
MAX_FORM_BYTES = 64 * 1024
POLL_SECONDS = 2.0
INTERRUPTED_CHECK_SECONDS = 5.0
SECURITY_HEADERS = {
    # Plotly sets inline styles on the elements it draws; scripts come only from /static.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; script-src 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
}


def _plotly_js() -> Path:
    # find_spec locates the package without importing it (plotly's Python side is large).
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is missing: pip install conveyor-ui again")
    return Path(next(iter(spec.submodule_search_locations))) / "package_data" / "plotly.min.js"


STATIC = {
    "ui.css": (HERE / "static" / "ui.css", "text/css"),
    "ui.js": (HERE / "static" / "ui.js", "text/javascript"),
    "favicon.svg": (HERE / "static" / "favicon.svg", "image/svg+xml"),
    "plotly.min.js": (None, "text/javascript"),
}


def is_loopback(host: str) -> bool:
    """True for exactly the loopback names a UI binds by default: 127.0.0.1, localhost, ::1.
    Not any `127.*` string: `127.attacker.example` is a DNS name its owner points anywhere."""
    return host.strip().lower() in LOOPBACK_NAMES


def _url_host(host: str) -> str:
    host = host.strip().lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_hosts(host: str, port: int) -> set[str]:
    """The Host header values a UI bound to `host`:`port` answers on loopback: each loopback
    name with the served port (and without it on port 80, as browsers send it)."""
    names = LOOPBACK_HOSTS if is_loopback(host) else (_url_host(host),)
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= set(names)
    return hosts


def allowed_origins(host: str, port: int, extra: tuple[str, ...] = ()) -> set[str]:
    """The origins an action's form may come from: the configured address, never the request's
    own Host. Loopback: the three loopback names with the port; another address: this
    machine's host names (the printed URL uses one) and the address itself unless it is a
    wildcard (0.0.0.0, ::); plus `extra` (--origin)."""
    if is_loopback(host):
        names: tuple[str, ...] = LOOPBACK_HOSTS
    else:
        import socket

        found = {socket.gethostname().lower(), socket.getfqdn().lower()}
        if host.strip() not in WILDCARD_HOSTS:
            found.add(_url_host(host))
        names = tuple(found)
    origins = {f"http://{name}:{port}" for name in names}
    if port == 80:
        origins |= {f"http://{name}" for name in names}
    return origins | {origin.rstrip("/").lower() for origin in extra}


class UIState:
    """What the pages share: the store (one connection, its own lock), options, the project's
    composed config (cached by conveyor.yaml's mtime), and one-shot notes after actions."""

    def __init__(self, project_dir: Path, *, allow_actions: bool, token: str | None,
                 store: Store | None = None, hosts: set[str] | None = None,
                 origins: set[str] | None = None, session: Any = None) -> None:
        from conveyor import Session

        self.project_dir = project_dir
        # The UI command's session (its plugins compose the config), or one of its own.
        self.session = session if session is not None else Session(project_dir)
        self.store = store or open_store(project_dir)
        self.allow_actions = allow_actions
        self.token = token
        self.hosts = hosts or set()
        self.origins = origins or set()
        self.csrf = secrets.token_urlsafe(24)
        self.notes: dict[str, tuple[str, str]] = {}
        self._config: tuple[float, dict[str, Any] | None, str | None] | None = None
        self._config_lock = threading.Lock()
        self._checked_interrupted = 0.0

    def config(self) -> tuple[dict[str, Any] | None, str | None]:
        """The project's composed config, or None and why it cannot be composed."""
        config_file = self.project_dir / "conveyor.yaml"
        mtime = config_file.stat().st_mtime if config_file.is_file() else 0.0
        with self._config_lock:
            if self._config is None or self._config[0] != mtime:
                try:
                    data, problem = self.session.compose(self.session.overrides).data, None
                except ConveyorError as exc:
                    data, problem = None, scrub(exc.message)
                except Exception as exc:  # a broken plugin must not take the UI down
                    data, problem = None, scrub(f"{type(exc).__name__}: {exc}")
                self._config = (mtime, data, problem)
            return self._config[1], self._config[2]

    def serve_port(self) -> int:
        config, _ = self.config()
        port = ((config or {}).get("serve") or {}).get("port") if config else None
        try:
            return int(port) if port else 3000
        except (TypeError, ValueError):
            return 3000

    def note(self, kind: str, text: str) -> str:
        key = secrets.token_urlsafe(8)
        if len(self.notes) > 100:
            self.notes.pop(next(iter(self.notes)))
        self.notes[key] = (kind, text)
        return key

    def mark_interrupted(self) -> None:
        """Runs whose process died show as interrupted, as `conveyor runs list` shows them."""
        now = time.monotonic()
        if now - self._checked_interrupted > INTERRUPTED_CHECK_SECONDS:
            self._checked_interrupted = now
            self.store.mark_interrupted()


class Guard:
    """ASGI middleware: Host check on loopback, the token, security headers."""

    def __init__(self, app: Any, *, state: UIState, check_host: bool) -> None:
        self.app = app
        self.state = state
        self.check_host = check_host

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        refusal = self._refusal(request)
        if refusal is None:
            async def send_with_headers(message: Any) -> None:
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    present = {k.lower() for k, _ in headers}
                    headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                                if k.encode() not in present]
                    message = {**message, "headers": headers}
                await send(message)

            await self.app(scope, receive, send_with_headers)
            return
        await refusal(scope, receive, send)

    def _refusal(self, request: Request) -> Response | None:
        if self.check_host:
            host = request.headers.get("host", "")
            if host.strip().lower() not in self.state.hosts:
                return PlainTextResponse(f"refused: Host '{host}' is not this UI's loopback "
                                         "address (127.0.0.1, localhost or [::1] with its "
                                         "port)", status_code=400)
        token = self.state.token
        if not token:
            return None
        given = request.query_params.get("token")
        if given is not None:
            if not _same(given, token):
                return _unauthorized()
            # Trade the token in the URL for a cookie, and drop it from the address bar.
            query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(query) if query else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict",
                                path="/")
            return response
        auth = request.headers.get("authorization", "")
        supplied = (request.headers.get("x-conveyor-token")
                    or (auth[7:] if auth.lower().startswith("bearer ") else None)
                    or request.cookies.get(TOKEN_COOKIE))
        if supplied is None or not _same(supplied, token):
            return _unauthorized()
        return None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _unauthorized() -> Response:
    return PlainTextResponse(
        "this Conveyor UI needs its token: open the URL `conveyor ui` printed "
        "(…/?token=…), or send the header X-Conveyor-Token", status_code=401)


# --- pages ---------------------------------------------------------------------------------


def create_app(project_dir: Path, *, allow_actions: bool = False, token: str | None = None,
               check_host: bool = True, host: str = "127.0.0.1", port: int = 5000,
               origins: tuple[str, ...] = (), session: Any = None) -> Any:
    """The UI for the project in `project_dir`, an ASGI application served on `host`:`port`.
    `check_host` refuses requests whose Host is not a loopback name with that port (for a
    loopback bind); `token`, when given, is required on every request; `allow_actions` turns on
    promote and rollback, accepted only from the configured address's origins (and `origins`).
    `session` is the `conveyor.Session` whose plugins read the project (default: a new one)."""
    state = UIState(Path(project_dir).resolve(), allow_actions=allow_actions, token=token,
                    hosts=allowed_hosts(host, port),
                    origins=allowed_origins(host, port, origins), session=session)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters.update(when=_when, secs=_secs, num=_num, short=_short)
    env.globals.update(poll_seconds=POLL_SECONDS)

    def render(request: Request, name: str, page: str, status_code: int = 200,
               **context: Any) -> Response:
        note = state.notes.pop(request.query_params.get("note", ""), None)
        return templates.TemplateResponse(request, name, {
            "page": page, "project": state.project_dir.name,
            "allow_actions": state.allow_actions, "csrf": state.csrf, "note": note,
            **context}, status_code=status_code)

    def runs(request: Request) -> Response:
        state.mark_interrupted()
        query = queries.RunsQuery.from_params(request.query_params)
        return render(request, "runs.html", "runs", **queries.runs_page(state.store, query))

    def run(request: Request) -> Response:
        detail = _found(queries.run_detail, state.store, request.path_params["run_id"])
        return render(request, "run.html", "runs", run=detail, config_yaml=_yaml(
            detail["config"]))

    def compare(request: Request) -> Response:
        picked = [r for value in request.query_params.getlist("run") for r in value.split(",")
                  if r.strip()]
        if len(picked) < 2:
            latest = [run.id for run in Runs(state.store).list(limit=20)]
            return render(request, "compare_pick.html", "compare", latest=latest,
                          picked=picked)
        result = _found(queries.compare, state.store, [p.strip() for p in picked])
        return render(request, "compare.html", "compare", **result)

    def pipeline(request: Request) -> Response:
        config, problem = state.config()
        stages = (config or {}).get("pipeline") or {}
        source = "conveyor.yaml"
        if not stages:
            stages, source = queries.recorded_pipeline(state.store), "the latest run"
        status = queries.last_stage_status(state.store, list(stages))
        graph = layout(stages, status)
        return render(request, "pipeline.html", "pipeline", graph=graph, source=source,
                      problem=problem, needs={name: needs_of(spec) for name, spec in stages.items()})

    def models(request: Request) -> Response:
        port = state.serve_port()
        return render(request, "models.html", "models", models=queries.models(state.store),
                      served=served_model(port), serve_port=port)

    def monitoring_page(request: Request) -> Response:
        return render(request, "monitoring.html", "monitoring",
                      **monitoring.page(state.store, request.query_params))

    def changes(request: Request) -> Response:
        return JSONResponse({"version": queries.change_token(state.store)},
                            headers={"cache-control": "no-store"})

    def static(request: Request) -> Response:
        entry = STATIC.get(request.path_params["name"])
        if entry is None:
            raise HTTPException(404, "not found")
        path, media_type = entry
        return FileResponse(path or _plotly_js(), media_type=media_type,
                            headers={"cache-control": "max-age=3600"})

    async def promote(request: Request) -> Response:
        form = await _action_form(request, state)
        name = request.path_params["name"]
        version = queries._int(form.get("version"), 0)
        force = form.get("force") == "yes"

        def act() -> str:
            previous = Registry(state.store).promote(
                name, version, force=force, reason=form["reason"], actor=_actor(request))
            return (f"{name}: champion is now version {version}"
                    + (f" (was {previous})" if previous else "")
                    + (" — forced past the gate" if force else ""))

        return await _act(state, act)

    async def rollback(request: Request) -> Response:
        form = await _action_form(request, state)
        name = request.path_params["name"]

        def act() -> str:
            current, target = Registry(state.store).rollback(
                name, reason=form["reason"], actor=_actor(request))
            return f"{name}: champion rolled back from version {current} to {target}"

        return await _act(state, act)

    def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=307)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        detail = getattr(exc, "detail", "not found")
        return render(request, "error.html", "", status_code=status, status=status,
                      message=detail)

    routes = [
        Route("/", home),
        Route("/runs", runs),
        Route("/runs/{run_id}", run),
        Route("/compare", compare),
        Route("/pipeline", pipeline),
        Route("/models", models),
        Route("/models/{name}/promote", promote, methods=["POST"]),
        Route("/models/{name}/rollback", rollback, methods=["POST"]),
        Route("/monitoring", monitoring_page),
        Route("/api/changes", changes),
        Route("/static/{name}", static),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: not_found})
    app.state.ui = state
    return Guard(app, state=state, check_host=check_host)


def _found(function: Any, *args: Any) -> Any:
    try:
        return function(*args)
    except queries.NotFound as exc:
        raise HTTPException(404, str(exc)) from exc


async def _action_form(request: Request, state: UIState) -> dict[str, str]:
    """The fields of an action's form, after every check a state-changing request needs."""
    if not state.allow_actions:
        raise HTTPException(403, "actions are off: start the UI with `conveyor ui "
                                 "--allow-actions` to promote or roll back from here")
    if not _from_own_pages(request, state.origins):
        raise HTTPException(403, "refused: the request did not come from this UI's own pages")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise HTTPException(413, "form too large")
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
    if not _same(fields.get("csrf", ""), state.csrf):
        raise HTTPException(403, "refused: the form's token is stale; reload the page")
    if fields.get("confirm") != "yes":
        raise HTTPException(400, "the action was not confirmed")
    fields["reason"] = fields.get("reason", "").strip()[:500]
    if not fields["reason"]:
        raise HTTPException(400, "say why: a reason is recorded with every promotion and "
                                 "rollback")
    return fields


def _from_own_pages(request: Request, origins: set[str]) -> bool:
    """The Origin (or, without one, the Referer's origin) is one of the configured addresses'.
    Compared with the server's own configuration, never with the request's Host header, which
    a rebinding attacker controls together with the Origin."""
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if not referer:
            return False
        scheme, sep, rest = referer.partition("://")
        if not sep:
            return False
        origin = f"{scheme}://{rest.split('/', 1)[0]}"
    return origin.strip().rstrip("/").lower() in origins


async def _act(state: UIState, act: Any) -> Response:
    try:
        text = await run_in_threadpool(act)
        key = state.note("ok", text)
    except ConveyorError as exc:
        hint = (exc.hint or "").replace("use --force", "tick 'force'")
        key = state.note("error", exc.message + (f" ({hint})" if hint else ""))
    return RedirectResponse(str(URL("/models").include_query_params(note=key)),
                            status_code=303)


def _actor(request: Request) -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    client = request.client.host if request.client else "?"
    return f"{user} via conveyor ui ({client})"


def _yaml(config: Any) -> str:
    import yaml

    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else ""


def _secs(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    return f"{value:.4g}"


def _short(value: Any, length: int = 12) -> str:
    text = "" if value is None else str(value)
    algorithm, _, digest = text.rpartition(":")
    if algorithm and len(digest) > length:
        return f"{algorithm}:{digest[:length]}"
    return text[:length] if len(text) > length and " " not in text else text
