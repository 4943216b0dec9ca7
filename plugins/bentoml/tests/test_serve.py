"""`conveyor serve` against a real BentoML server on a free 127.0.0.1 port: predictions and
metadata, every kind of bad input, limits, hot swap under load, SIGTERM, tampered models."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, datetime

import httpx
import pytest
from _serve_support import RECORD, run_cli
from conveyor.predictions import read_prediction_log

pytestmark = [pytest.mark.server]
JSON = {"content-type": "application/json"}


def post(server, body, headers=JSON, timeout=30):
    content = body if isinstance(body, str | bytes) else json.dumps(body)
    return httpx.post(f"{server.url}/predict", content=content, headers=headers, timeout=timeout)


async def hammer(url: str, concurrency: int, *, during, after: int) -> list:
    """Single-record requests from `concurrency` clients while `during()` runs (it starts
    0.3 s in) and until `after` more were answered by a version other than the first one
    seen, or 60 s; (status, version) each, in order of answer. As small as still meaningful:
    the load always spans the swap, however fast the machine."""
    results: list = []
    body = json.dumps([RECORD])
    limits = httpx.Limits(max_connections=concurrency)
    deadline = time.monotonic() + 60
    state = {"new": 0}
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            while state["new"] < after and time.monotonic() < deadline:
                try:
                    resp = await client.post(f"{url}/predict", content=body, headers=JSON)
                    version = resp.json()[0]["model_version"] if resp.status_code == 200 else None
                    results.append((resp.status_code, version))
                    if version is not None and version != results[0][1]:
                        state["new"] += 1
                except httpx.HTTPError as exc:
                    results.append((type(exc).__name__, None))

        tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
        await asyncio.sleep(0.3)
        await asyncio.to_thread(during)
        await asyncio.gather(*tasks)
    return results


def test_predicts_logs_and_describes_itself(project, serve):
    server = serve(project)
    resp = post(server, [RECORD, {**RECORD, "customer_id": "C2", "region": "west"}])
    assert resp.status_code == 200, resp.text
    first, second = resp.json()
    assert first["model"] == "shop" and first["model_version"] == 1
    assert first["prediction"] in (0, 1)
    assert set(first["probabilities"]) == {"0", "1"}
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-9
    assert first["request_id"] == second["request_id"]
    meta = httpx.get(f"{server.url}/metadata").json()
    assert (meta["model"], meta["version"], meta["ready"]) == ("shop", 1, True)
    assert meta["run_id"] and meta["classes"] == [0, 1]
    fields = {f["name"]: f for f in meta["input_schema"]["fields"]}
    assert fields["tenure_months"]["ge"] == 1 and fields["region"]["isin"]
    for probe in ("livez", "healthz", "readyz"):
        assert httpx.get(f"{server.url}/{probe}").status_code == 200
    # the UI's models page reads what is served from this same answer
    ui_serving = pytest.importorskip("conveyor_ui.serving")
    served = ui_serving.served_model(server.port)
    assert (served["name"], served["version"], served["run_id"]) == ("shop", 1, meta["run_id"])
    assert server.stop() == 0  # SIGTERM: a clean exit, the prediction log flushed
    frames = list(read_prediction_log(project.path, "shop"))
    log = frames[0]
    assert list(log["request_id"]) == [first["request_id"]] * 2
    assert list(log["customer_id"]) == ["C1", "C2"]
    assert str(log["timestamp"].dtype) == "datetime64[us, UTC]"
    assert list(log["model_version"]) == [1, 1]
    assert log["proba__1"].tolist() == [first["probabilities"]["1"],
                                        second["probabilities"]["1"]]
    assert list(read_prediction_log(project.path, "shop", since=datetime.now(UTC))) == []


BAD = [
    ("malformed JSON", '[{"tenure_months": 5,', "json_invalid", None),
    ("an empty list", "[]", "too_short", None),
    ("an extra field", [{**RECORD, "favourite_colour": "blue"}], "extra_forbidden",
     "favourite_colour"),
    ("a missing field", [{k: v for k, v in RECORD.items() if k != "region"}], "missing",
     "region"),
    ("a string for a number", [{**RECORD, "tenure_months": "5"}], "int_type", "tenure_months"),
    ("NaN", '[' + json.dumps(RECORD).replace("20.5", "NaN") + ']', "finite_number",
     "monthly_charges"),
    ("a value out of range", [{**RECORD, "support_calls": 99}], "less_than_equal",
     "support_calls"),
    ("a value not allowed", [{**RECORD, "region": "mars"}], "literal_error", "region"),
    ("a repeated unique id", [RECORD, RECORD], "unique", "customer_id"),
    ("not a list", json.dumps(RECORD), "list_type", None),
]


def test_every_bad_input_gets_a_4xx_naming_the_field_and_the_rule(project, serve):
    server = serve(project, "serve.max_body_mb=0.01")
    for what, body, rule, field in BAD:
        resp = post(server, body)
        assert resp.status_code == 400, (what, resp.status_code, resp.text)
        text = resp.text
        assert rule in text, (what, text)
        if field is not None:
            assert field in text, (what, text)
    for content_type in ("application/vnd.bentoml+pickle", "application/python-pickle",
                         "text/plain", "application/x-www-form-urlencoded"):
        resp = post(server, b"\x80\x04\x95pickle", headers={"content-type": content_type})
        assert resp.status_code == 415, (content_type, resp.text)
        assert "application/json" in resp.json()["error"]
    assert post(server, b"[]", headers={}).status_code == 415  # no content type at all
    big = json.dumps([RECORD] * 200)
    resp = post(server, big)
    assert resp.status_code == 413 and "serve.max_body_mb" in resp.json()["error"]
    chunked = httpx.post(f"{server.url}/predict", headers=JSON,
                         content=iter([big[:5000].encode(), big[5000:].encode()]))
    assert chunked.status_code == 413
    resp = httpx.post(f"{server.url}/recommend", json={"user_id": 1, "k": 3})
    assert resp.status_code == 409 and "POST /predict" in resp.json()["error"]  # a classifier
    assert post(server, [RECORD]).status_code == 200  # and it still serves
    assert "Traceback" not in server.output()


@pytest.mark.slow
def test_a_promotion_under_load_fails_no_request_and_the_new_version_answers(project, serve):
    server = serve(project, "serve.poll_seconds=0.2")

    def promote() -> None:
        done = run_cli("models", "promote", "shop", "2", "--force", cwd=project.path)
        assert done.returncode == 0, done.stderr

    results = asyncio.run(hammer(server.url, 32, during=promote, after=300))
    statuses = {status for status, _ in results}
    assert statuses == {200}, [r for r in results if r[0] != 200][:5]
    versions = [v for _, v in results]
    assert versions[0] == 1 and versions[-1] == 2 and versions.count(2) >= 300
    switch = versions.index(2)
    assert switch >= 32  # the swap came under load: every client had a v1 answer first
    assert set(versions[switch + 64:]) == {2}  # after the swap (and what was in flight): v2
    meta = httpx.get(f"{server.url}/metadata").json()
    assert meta["version"] == 2 and meta["swaps"] == 1


RSS_GROWTH_BOUND_MB = 50  # per 10,000 requests after warm-up (also bench_serve.py's bound)


# A connection the server closed before any byte of an answer (httpx's ReadError or
# RemoteProtocolError) is retried once, as clients with retries do; how often is counted and
# held to a bound. Seen: one in ~12,000 requests in some CI runs with both cores busy, never
# alone nor under a synthetic CPU load; not root-caused (uvicorn's keep-alive close racing
# the next request on that connection is the suspect).
RESETS = (httpx.ReadError, httpx.RemoteProtocolError)
RESETS_BOUND = 3


async def fire(url: str, concurrency: int, total: int) -> tuple[list, int]:
    """`total` single-record requests from `concurrency` clients: the status of each, and how
    many connections were reset before an answer (each retried once)."""
    body = json.dumps([RECORD])
    statuses: list = []
    resets = 0
    left = iter(range(total))
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency),
                                 timeout=60) as client:

        async def worker() -> None:
            nonlocal resets
            for _ in left:
                for attempt in (1, 2):
                    try:
                        resp = await client.post(f"{url}/predict", content=body, headers=JSON)
                    except RESETS as exc:
                        resets += 1
                        if attempt == 2:
                            statuses.append(type(exc).__name__)
                        continue
                    except httpx.HTTPError as exc:
                        statuses.append(type(exc).__name__)
                    else:
                        statuses.append(resp.status_code)
                    break

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses, resets


def tree_rss_mb(pid: int) -> float:
    import psutil  # BentoML's own dependency

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20


@pytest.mark.slow
def test_ten_thousand_requests_at_concurrency_32_no_error_and_bounded_memory(project, serve):
    server = serve(project)
    warm, warm_resets = asyncio.run(fire(server.url, 32, 2_000))
    assert set(warm) == {200}, (sorted(set(map(str, warm))), server.output()[-3000:])
    before = tree_rss_mb(server.process.pid)
    statuses, resets = asyncio.run(fire(server.url, 32, 10_000))
    after = tree_rss_mb(server.process.pid)
    errors = [s for s in statuses if s != 200]
    assert len(statuses) == 10_000 and not errors, (len(errors), sorted(set(map(str, errors))))
    assert warm_resets + resets <= RESETS_BOUND, (warm_resets, resets, server.output()[-3000:])
    assert after - before < RSS_GROWTH_BOUND_MB, (before, after)
    assert httpx.get(f"{server.url}/livez").status_code == 200


@pytest.mark.slow
def test_sigterm_under_load_lets_requests_in_flight_finish(project, serve):
    # uvicorn stops accepting, waits for every request task, then runs the lifespan shutdown
    # (the service's hook, which flushes the log); BentoML 1.4's service app never cancels
    # its batching queue. What used to fail here were the dispatcher's 503s when a queued
    # request's estimated latency passed batching.max_latency_ms (then 2 s), SIGTERM or not.
    server = serve(project)

    async def load_then_term() -> list:
        async with httpx.AsyncClient(timeout=30) as client:
            body = json.dumps([{**RECORD, "customer_id": f"C{i}"} for i in range(50)])
            tasks = [asyncio.create_task(client.post(f"{server.url}/predict", content=body,
                                                     headers=JSON)) for _ in range(40)]
            await asyncio.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(load_then_term())
    answered = [r for r in results if isinstance(r, httpx.Response)]
    assert answered and all(r.status_code == 200 for r in answered), \
        [getattr(r, "status_code", r) for r in results]
    assert server.process.wait(30) == 0


def test_deadline_504_then_the_limit_still_holds_and_liveness_stays_up(project, serve):
    server = serve(project, "+serve.timeout=0.2", "+serve.max_concurrency=2",
                   "+serve.max_body_mb=50", "+serve.batching.enabled=false")
    heavy = json.dumps([{**RECORD, "customer_id": f"C{i}"} for i in range(40_000)])
    resp = post(server, heavy, timeout=60)
    assert resp.status_code == 504, resp.text[:300]
    assert post(server, [RECORD]).status_code == 200

    async def burst() -> tuple[list, list]:
        async with httpx.AsyncClient(timeout=60) as client:
            medium = json.dumps([{**RECORD, "customer_id": f"C{i}"} for i in range(3000)])
            tasks = [asyncio.create_task(client.post(f"{server.url}/predict", content=medium,
                                                     headers=JSON)) for _ in range(12)]
            started = time.monotonic()
            probes = []
            while not all(t.done() for t in tasks):
                probe = await client.get(f"{server.url}/livez")
                probes.append(probe.status_code)
                await asyncio.sleep(0.02)
            answers = [await t for t in tasks]
            assert time.monotonic() - started < 30
            return answers, probes

    answers, probes = asyncio.run(burst())
    codes = [a.status_code for a in answers]
    assert 429 in codes and set(codes) <= {200, 429, 504}, codes
    assert set(probes) == {200}
    assert post(server, [RECORD]).status_code == 200


def test_no_champion_stops_serve_and_a_tampered_one_starts_it_not_ready(project, serve):
    """No champion: exit 2 naming the fix. A champion that cannot be loaded (issue 14.9: serve
    refused to start): one line on stderr, 503 from /readyz and /predict naming why, and ready
    as soon as a loadable version is promoted."""
    from conveyor.store import ArtifactRef, Registry, open_store

    store = open_store(project.path)
    try:
        record = Registry(store).get("shop", 1)
        path = store.artifacts.path(ArtifactRef.from_dict(record.artifact))
        with store.write() as conn:
            conn.execute("DELETE FROM aliases")
    finally:
        store.close()
    done = run_cli("serve", "--port", "1", cwd=project.path)
    assert done.returncode == 2 and "has no champion yet" in done.stderr, done.stderr
    assert "conveyor models promote shop VERSION" in done.stderr
    run_cli("models", "promote", "shop", "1", "--force", cwd=project.path).check_returncode()
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")

    server = serve(project, "+serve.poll_seconds=0.2", ready=False)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.process.poll() is None, server.output()
        try:
            if httpx.get(f"{server.url}/livez", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        raise AssertionError(server.output())
    output = server.output()
    said = [line for line in output.splitlines() if "cannot load the champion" in line]
    assert len(said) >= 1 and "shop v1" in said[0] and "sha256" in said[0], output
    assert "starting not ready" in said[0] and "Traceback" not in output, output
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 503 and "sha256" in ready.json()["error"], ready.text
    resp = post(server, [RECORD])
    assert resp.status_code == 503 and "sha256" in resp.json()["error"], resp.text
    meta = httpx.get(f"{server.url}/metadata").json()
    assert meta["ready"] is False and meta["version"] is None and "sha256" in meta["error"]

    run_cli("models", "promote", "shop", "2", "--force", cwd=project.path).check_returncode()
    server.wait_ready(timeout=10)
    resp = post(server, [RECORD])
    assert resp.status_code == 200 and resp.json()[0]["model_version"] == 2, resp.text
    meta = httpx.get(f"{server.url}/metadata").json()
    assert meta["ready"] is True and meta["error"] is None and meta["features"]
    assert "Traceback" not in server.output()


def test_a_tampered_new_champion_is_not_swapped_in(project, serve):
    from conveyor.store import ArtifactRef, Registry, open_store

    server = serve(project, "+serve.poll_seconds=0.2")
    store = open_store(project.path)
    try:
        path = store.artifacts.path(ArtifactRef.from_dict(Registry(store).get("shop", 2).artifact))
    finally:
        store.close()
    path.chmod(0o644)
    path.write_bytes(path.read_bytes() + b"tampered")
    run_cli("models", "promote", "shop", "2", "--force", cwd=project.path).check_returncode()
    time.sleep(1.5)
    meta = httpx.get(f"{server.url}/metadata").json()
    assert meta["version"] == 1 and "sha256" in meta["error"]
    assert post(server, [RECORD]).json()[0]["model_version"] == 1
    assert httpx.get(f"{server.url}/readyz").status_code == 200  # still a verified model


def test_a_busy_port_is_a_usage_error_before_serving_is_announced(project):
    """Issue 14.9: `serve` on a busy port printed "serving ..." then a raw traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli("serve", "--port", str(port), cwd=project.path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "serving" not in done.stdout and "Traceback" not in done.stderr


@pytest.mark.parametrize("batching", ["true", "false"])
def test_after_a_timeout_storm_a_lone_request_is_answered_at_once(project, serve, batching):
    """Issue 14.9: after a timeout storm, single requests got 504 for ~10-20 s (the storm's work
    still ran after its requests were answered 504) and each 504 logged a full traceback."""
    server = serve(project, "+serve.timeout=0.3", "+serve.max_body_mb=50",
                   f"+serve.batching.enabled={batching}")
    medium = json.dumps([{**RECORD, "customer_id": f"C{i}"} for i in range(3000)])

    async def storm() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            answers = await asyncio.gather(*[client.post(f"{server.url}/predict",
                                                         content=medium, headers=JSON)
                                             for _ in range(40)])
        return [a.status_code for a in answers]

    codes = asyncio.run(storm())
    assert codes.count(504) >= 10, codes
    started = time.monotonic()
    resp = post(server, [RECORD])
    first = time.monotonic() - started
    late = []
    while resp.status_code != 200 and time.monotonic() - started < 60:
        late.append(resp.status_code)
        time.sleep(0.1)
        resp = post(server, [RECORD])
    waited = time.monotonic() - started
    print(f"batching={batching}: first answer {first:.2f} s, 200 after {waited:.2f} s, "
          f"{len(late)} refused first: {set(late)}")
    assert resp.status_code == 200 and waited < 2, (waited, late)
    time.sleep(0.5)
    log = server.output()
    assert log.count("timed out after 0.3 s: answered 504") == codes.count(504), log[-3000:]
    if 503 not in codes:  # BentoML's own shedding (503) logs its traceback; a 504 must not
        assert "Traceback" not in log and "CancelledError" not in log, log[-3000:]
