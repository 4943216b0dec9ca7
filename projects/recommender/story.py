"""The recommender story, end to end, with the real console script: `make demo` runs it.

A retailer recommends ten items to every customer who visits. Conveyor trains the first model on
three weeks of interactions, serves it (`conveyor serve`, `POST /recommend`), and then looks
after it with nobody touching anything. Every simulated week:

1. each customer who visits asks the service for a slate (the service logs every slate with its
   request id, the model version that answered and the items in order);
2. the week's views and purchases arrive afterwards in `incoming/`, each carrying the request id
   of the slate the customer had been shown;
3. `conveyor watch` joins them to the logged slates (`conveyor feedback`), records the week's
   online hit rate and NDCG as a monitoring result, and applies the retraining policy of
   `conveyor.yaml`: when the hit rate falls, a challenger is trained on the weeks since the
   change, compared with the champion on the newest two days neither trained on, and promoted
   through the gate; the running service picks the new champion up by itself.

From week 7 the season changes what customers buy (the retail simulator,
`conveyor_recsys.simulate`, seeded: the same story every time).

    python story.py [--port 3000]

It ends with a table per week and a plot (report/hit_rate.png): the online hit rate of the
system as it ran, of the first model never retrained, and of a model trained on that week's own
behaviour (a parallel week of the simulator: the same customers, other sessions).
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = "recommender"
K = 10
CUTOFF = 4  # weeks 1-3 are the history the first model trains on; weeks 4-12 are replayed


@functools.cache
def world():
    from conveyor_recsys.simulate import RetailWorld

    return RetailWorld(seed=3, weeks=12, change_week=7, change="season")


@functools.cache
def simulation(stream: int = 0):
    from dataclasses import replace

    from conveyor_recsys.simulate import simulate

    return simulate(replace(world(), stream=stream))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port of the service (0: a free one)")
    args = parser.parse_args(argv)
    os.chdir(HERE)
    step("the retail simulator: 2,000 customers, 500 items and more arriving, 12 weeks, the "
         "season changes in week 7")
    reset()
    step("weeks 1-3: train the first model on the history (conveyor run)")
    conveyor("run")
    server = start_server(args.port or free_port())
    rows = []
    try:
        for week in range(CUTOFF, world().weeks + 1):
            step(f"week {week}: " + ("customers buy as before" if week < world().change_week
                                     else "the season has changed what customers buy"))
            slates = ask_for_slates(server.port, week)
            wait_for_slate_log(slates)
            write_feedback(week, slates)
            handled = json.loads(conveyor("watch", "--feedback", "incoming", "--once", "--json",
                                          capture=True))
            row = summarise(week, slates, handled)
            rows.append(row)
            if row["new_champion"]:
                wait_for_version(server.port, row["new_champion"])
    finally:
        stop_server(server)
    step("the story in numbers")
    print_table(rows)
    plot(rows, HERE / "report" / "hit_rate.png")
    step("look around")
    print("  conveyor -C projects/recommender runs list               # every training run")
    print("  conveyor -C projects/recommender models history recommender  # who promoted what, why")
    print("  conveyor -C projects/recommender retrain --list          # every retraining decision")
    print(f"  the plot: {(HERE / 'report' / 'hit_rate.png').relative_to(HERE.parents[1])}")
    return 0


def reset() -> None:
    """Start from nothing: a new store, the simulator's history as the training data."""
    for leftover in (".conveyor", "incoming", "data", "report"):
        shutil.rmtree(HERE / leftover, ignore_errors=True)
    (HERE / "incoming").mkdir()
    (HERE / "data").mkdir()
    history = simulation().weeks(1, CUTOFF - 1).drop(columns=["week"])
    history.to_csv(HERE / "data" / "interactions.csv", index=False,
                   date_format="%Y-%m-%dT%H:%M:%SZ")
    print(f"  data/interactions.csv: {len(history):,} interactions of "
          f"{history['user_id'].nunique():,} customers with {history['item_id'].nunique():,} "
          "items")


def conveyor(*args: str, capture: bool = False) -> str:
    done = subprocess.run(["conveyor", *args], cwd=HERE, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if done.returncode not in (0, 1):  # 1: a gate or policy said no, part of the story
        raise SystemExit(f"conveyor {' '.join(args)} failed with exit code {done.returncode}")
    return done.stdout or ""


# --- the service ------------------------------------------------------------------------------

class Server(subprocess.Popen):
    port: int


def start_server(port: int) -> Server:
    step(f"serve the champion over HTTP on 127.0.0.1:{port} (conveyor serve)")
    server = subprocess.Popen(["conveyor", "serve", "--port", str(port)], cwd=HERE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    server.port = port  # type: ignore[attr-defined]
    deadline = time.time() + 120
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit("conveyor serve exited; run it by hand to see why")
        try:
            metadata = call(port, "GET", "/metadata")
            if metadata.get("ready"):
                print(f"  serving {metadata.get('model')} v{metadata.get('version')}")
                return server  # type: ignore[return-value]
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.5)
    stop_server(server)
    raise SystemExit("conveyor serve did not become ready within 120 s")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def wait_for_version(port: int, version: int, timeout: float = 30.0) -> None:
    """The service swaps to a new champion by itself (it polls the alias); wait for it so the
    next week is served by the model the policy chose."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if call(port, "GET", "/metadata").get("version") == version:
            print(f"  the service now answers with v{version}")
            return
        time.sleep(0.3)
    print(f"  the service did not pick up v{version} within {timeout:.0f} s")


_connections = threading.local()


def call(port: int, method: str, path: str, body: object = None, *, retry: bool = True) -> dict:
    """One request on this thread's keep-alive connection (opened again once if the server
    closed it while idle)."""
    connection = getattr(_connections, "connection", None)
    if connection is None or connection.port != port:
        connection = _connections.connection = http.client.HTTPConnection("127.0.0.1", port,
                                                                          timeout=30)
    payload = None if body is None else json.dumps(body)
    try:
        connection.request(method, path, body=payload,
                           headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException):
        _connections.connection = None
        connection.close()
        if not retry:
            raise
        return call(port, method, path, body, retry=False)
    if response.status >= 400:
        raise ValueError(f"{method} {path}: {response.status} {data[:300]!r}")
    return json.loads(data)


def ask_for_slates(port: int, week: int) -> dict[int, dict]:
    """Every customer who visits this week asks for a slate, before their visits happen."""
    users = sorted(int(u) for u in simulation().week(week)["user_id"].unique())
    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda user: call(port, "POST", "/recommend",
                                                  {"user_id": user, "k": K}), users))
    seconds = time.perf_counter() - started
    versions = sorted({a["model_version"] for a in answers})
    fallbacks = sum(bool(a["fallback"]) for a in answers)
    print(f"  {len(users):,} customers asked for {K} items ({len(users) / seconds:,.0f} "
          f"requests/s), answered by {', '.join(f'v{v}' for v in versions)}; {fallbacks:,} new "
          "customers got the popular items")
    return dict(zip(users, answers, strict=True))


def wait_for_slate_log(slates: dict[int, dict], timeout: float = 30.0) -> None:
    """The service writes its slate log off the request path, every few seconds; the week's
    feedback is joined to it, so wait until the week's slates are on disk (in real life the
    purchases come days later)."""
    from conveyor.predictions import read_prediction_log

    wanted = {answer["request_id"] for answer in slates.values()}
    deadline = time.time() + timeout
    while time.time() < deadline:
        logged = set()
        for part in read_prediction_log(HERE, MODEL, columns=["request_id"]):
            logged.update(part["request_id"])
        if wanted <= logged:
            return
        time.sleep(0.5)
    raise SystemExit(f"the service did not log the week's slates within {timeout:.0f} s")


def write_feedback(week: int, slates: dict[int, dict]) -> Path:
    """The week's views and purchases, each with the request id of the slate its customer saw
    (the shop's pages carry it), delivered after the week as one file."""
    events = simulation().week(week).drop(columns=["week"]).copy()
    events["request_id"] = events["user_id"].map(
        {user: answer["request_id"] for user, answer in slates.items()})
    path = HERE / "incoming" / f"week-{week:02d}.csv"
    tmp = path.with_suffix(".tmp")
    events.to_csv(tmp, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
    tmp.rename(path)  # watch never sees half a file
    return path


# --- the figures ------------------------------------------------------------------------------

def hit_rate(slates: dict[int, list[int]], week: int, model) -> float:
    """What `conveyor feedback` measures for the served slates, for slates made in-process:
    among the customers who bought in the week something `model` did not train on (what a
    slate excluding the seen items can hold), the share whose slate held one of them."""
    from conveyor_recsys.metrics import ranking_metrics

    relevant = {}
    for user, items in simulation().relevant(week).items():
        items = items - set(model.seen(user))
        if items and user in slates:
            relevant[user] = items
    return ranking_metrics(slates, relevant, k=K)[f"hit_rate@{K}"]


@functools.cache
def first_model():
    """v1, the model never retrained: loaded (and its sha256 checked) once."""
    from conveyor import api

    return api.load_model(HERE, MODEL, version=1).model


def reference_model(week: int):
    """Trained on the week's own behaviour: the same customers in a parallel week of the
    simulator (other sessions), so it never sees the purchases it is scored on."""
    from conveyor_recsys.models import Recommender

    events = simulation(stream=1).week(week)
    weights = events["event"].map({"view": 1.0, "purchase": 5.0})
    return Recommender.fit("item_item", events["user_id"].to_numpy(),
                           events["item_id"].to_numpy(), weights.to_numpy())


def offline_slates(model, users, exclude_from=None) -> dict[int, list[int]]:
    """Slates from a model in-process; `exclude_from`: leave out what *that* model saw in
    training (the history), as the served models do for theirs."""
    out = {}
    for user in users:
        if exclude_from is None:
            slate = model.recommend(user, K)
        else:
            slate = model.recommend(user, K, exclude_seen=False, seen=exclude_from.seen(user))
        out[user] = [item for item, _ in slate]
    return out


def summarise(week: int, slates: dict[int, dict], handled: list[dict]) -> dict:
    from conveyor.store import open_store
    from conveyor_monitor.records import Monitoring
    from conveyor_retrain.records import RetrainDecisions

    item = handled[-1] if handled else {}
    store = open_store(HERE)
    try:
        # one monitored batch per period of serving the file's slates fall in; the replay
        # serves a week's slates within seconds, so one
        batches = [Monitoring(store).get(b) for b in item.get("batches") or ()]
        batch = max(batches, key=lambda b: b.labelled_rows or 0) if batches else None
        decision = RetrainDecisions(store).get(item["decision"]) if item.get("decision") else None
    finally:
        store.close()
    users = list(slates)
    performance = (batch.performance or {}) if batch else {}
    details = ((batch.details or {}).get("feedback") or {}) if batch else {}
    return {
        "week": week,
        "changed": week >= world().change_week,
        "served_by": ",".join(f"v{v}" for v in sorted({a["model_version"]
                                                       for a in slates.values()})),
        "online_hit_rate": performance.get(f"hit_rate@{K}"),
        "online_ndcg": performance.get(f"ndcg@{K}"),
        "unmatched": details.get("unmatched_events"),
        "never_retrained": hit_rate(offline_slates(first_model(), users), week, first_model()),
        "trained_on_week": hit_rate(offline_slates(reference_model(week), users,
                                                   exclude_from=first_model()), week,
                                    first_model()),
        "decision": decision.outcome if decision else item.get("status", "-"),
        "new_champion": decision.challenger_version if decision
        and decision.outcome == "promoted" else None,
        "versus": versus(decision),
    }


def versus(decision) -> str:
    """Challenger - champion in ndcg@10 on the newest two days neither trained on, with its 95%
    interval (paired bootstrap over the customers), for a decision that compared them."""
    comparison = ((decision.metrics or {}).get("comparison") or {}) if decision else {}
    interval = (comparison.get("intervals") or {}).get(f"ndcg@{K}")
    if not interval:
        return "-"
    if interval.get("low") is None:
        return f"{interval['diff']:+.3f}"
    return f"{interval['diff']:+.3f} [{interval['low']:+.3f}, {interval['high']:+.3f}]"


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="recommender: online hit rate@10 week by week")
    for column in ("week", "season", "served by", "the system", "never retrained",
                   "trained on week", "system ndcg", "retraining",
                   "challenger - champion ndcg (95% CI)"):
        table.add_column(column, justify="left" if column == "retraining" else "right")
    for row in rows:
        table.add_row(
            str(row["week"]), "changed" if row["changed"] else "as before", row["served_by"],
            pct(row["online_hit_rate"]), pct(row["never_retrained"]),
            pct(row["trained_on_week"]), num(row["online_ndcg"]),
            row["decision"] + (f" -> v{row['new_champion']}" if row["new_champion"] else ""),
            row["versus"])
    Console(width=160).print(table)
    print(f"  hit rate@{K}: among the week's buyers of something the model had not trained on, "
          "the share whose slate\n  held one of those items. The system: what `conveyor "
          "feedback` measured from the slates the service\n  logged and the purchases joined "
          "to them; never retrained: the first model's slates; trained on\n  week: a model "
          "trained on that week's behaviour (a parallel week: the same customers, other\n  "
          "sessions), the reference. Challenger - champion: ndcg@10 on the newest two days "
          "neither trained on.")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weeks = [r["week"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    system = [r["online_hit_rate"] if r["online_hit_rate"] is not None else float("nan")
              for r in rows]
    ax.plot(weeks, system, "o-", label="the system as it ran")
    ax.plot(weeks, [r["never_retrained"] for r in rows], "s--", label="never retrained")
    ax.plot(weeks, [r["trained_on_week"] for r in rows], ":", color="grey",
            label="trained on that week (reference)")
    top = max(max(r["online_hit_rate"] or 0, r["never_retrained"], r["trained_on_week"])
              for r in rows)
    for row in rows:
        if row["new_champion"]:  # promoted after that week's feedback: it serves the next
            ax.axvline(row["week"] + 0.5, color="green", alpha=0.35)
            ax.annotate(f"v{row['new_champion']}", (row["week"] + 0.5, top * 1.08),
                        color="green", ha="center", fontsize=8)
    ax.axvspan(world().change_week - 0.5, weeks[-1] + 0.5, color="orange", alpha=0.10,
               label="the season has changed")
    ax.set(xlabel="week", ylabel=f"hit rate@{K} among the week's buyers", ylim=(0, top * 1.2),
           title="Recommender: online hit rate of the model in service")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    print(f"  wrote {path.relative_to(HERE)}")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    raise SystemExit(main())
