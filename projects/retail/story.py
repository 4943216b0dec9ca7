"""The retail story, end to end, with the real console script: `make demo` runs it.

A retailer trains a model that predicts whether a customer buys the product recommended to them,
serves it, and then lets Conveyor look after it. Every simulated week a batch of recommendations
with their outcomes arrives in `incoming/`; `conveyor watch` monitors it (drift, accuracy) and
applies the retraining policy of `conveyor.yaml`; the running `conveyor serve` picks up every
new champion by itself. From week 5 customers change their behaviour. Nobody touches anything.

    python story.py [--weeks 10] [--port 3000] [--no-serve]

It ends with a table per week and a plot (report/accuracy.png) of the accuracy of the model
that was in service, against the same first model never retrained and against a model trained
on that very week (the best one could hope for).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import retail_data  # noqa: E402  (the generator next to this file)

FIRST_WEEK = 4  # weeks 0-3 are the training history in data/purchases.csv
SERVED_PER_WEEK = 200  # recommendations scored live through the service each week


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weeks", type=int, default=10, help="simulated weeks after the history")
    parser.add_argument("--port", type=int, default=0, help="port of the service (0: a free one)")
    parser.add_argument("--no-serve", action="store_true", help="skip the HTTP service")
    args = parser.parse_args(argv)
    os.chdir(HERE)
    reset()
    step("week 0-3: train the first model on four weeks of history (conveyor run)")
    conveyor("run")
    server = None if args.no_serve else start_server(args.port or free_port())
    rows = []
    try:
        for week in range(FIRST_WEEK, FIRST_WEEK + args.weeks):
            step(f"week {week}: " + ("customers behave as before" if week < retail_data.SHIFT_START
                                     else "behaviour is shifting"
                                     if retail_data.shift_level(week) < 1
                                     else "the new behaviour holds"))
            batch = retail_data.generate_week(week)
            answered = serve_some(server, batch) if server else None
            retail_data.write_csv(batch, HERE / "incoming" / f"week-{week:02d}.csv")
            handled = json.loads(conveyor("watch", "--inbox", "incoming", "--once", "--json",
                                          capture=True))
            rows.append(summarise(week, batch, handled, answered))
    finally:
        if server:
            stop_server(server)
    step("the story in numbers")
    print_table(rows)
    plot(rows, HERE / "report" / "accuracy.png")
    step("look around")
    print("  conveyor -C projects/retail runs list             # every training run, retrains too")
    print("  conveyor -C projects/retail models history retail # who promoted what, when, why")
    print("  conveyor -C projects/retail retrain --list        # every retraining decision")
    print(f"  the plot: {(HERE / 'report' / 'accuracy.png').relative_to(HERE.parents[1])}")
    print("  the UI:   conveyor ui --project projects/retail   # then open http://127.0.0.1:5000")
    return 0


def reset() -> None:
    """Start from the shipped project: no store, no inbox, no windows from an earlier story."""
    for leftover in (".conveyor", "incoming", "data/windows", "report"):
        shutil.rmtree(HERE / leftover, ignore_errors=True)
    (HERE / "incoming").mkdir()


def conveyor(*args: str, capture: bool = False) -> str:
    done = subprocess.run(["conveyor", *args], cwd=HERE, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if done.returncode not in (0, 1):  # 1: a gate or policy said no, part of the story
        raise SystemExit(f"conveyor {' '.join(args)} failed with exit code {done.returncode}")
    return done.stdout or ""


def start_server(port: int) -> subprocess.Popen:
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
            metadata = request(port, "GET", "/metadata")
            print(f"  serving {metadata.get('model')} v{metadata.get('version')}")
            return server
        except (OSError, urllib.error.URLError, ValueError):
            time.sleep(0.5)
    stop_server(server)
    raise SystemExit("conveyor serve did not become ready within 120 s")


def stop_server(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def serve_some(server: subprocess.Popen, batch) -> dict:
    """Score a sample of the week's recommendations live; which version answered?"""
    sample = batch.drop(columns=["purchased"]).head(SERVED_PER_WEEK)
    records = json.loads(sample.to_json(orient="records"))
    versions: dict[str, int] = {}
    for start in range(0, len(records), 50):
        for result in request(server.port, "POST", "/predict", records[start:start + 50]):
            version = str(result.get("model_version", "?"))
            versions[version] = versions.get(version, 0) + 1
    return versions


def request(port: int, method: str, path: str, body: object = None) -> dict | list:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as response:
        return json.loads(response.read())


def summarise(week: int, batch, handled: list[dict], answered: dict | None) -> dict:
    from conveyor.store import open_store
    from conveyor_monitor.records import Monitoring
    from conveyor_retrain.records import RetrainDecisions

    item = handled[-1] if handled else {}
    store = open_store(HERE)
    try:
        record = Monitoring(store).get(item["batch"]) if item.get("batch") else None
        decision = RetrainDecisions(store).get(item["decision"]) if item.get("decision") else None
    finally:
        store.close()
    return {
        "week": week,
        "shift": retail_data.shift_level(week),
        "served_by": ",".join(f"v{v}" for v in sorted(answered)) if answered else "-",
        "champion": record.model_version if record else None,
        "drift_share": record.drift_share if record else None,
        "accuracy": (record.performance.get("accuracy") if record else None),
        "never_retrained": accuracy(first_model(), batch),
        "trained_on_week": accuracy(oracle(week), batch),
        "decision": decision.outcome if decision else item.get("status", "?"),
        "new_champion": decision.challenger_version if decision and decision.outcome ==
        "promoted" else None,
        "versus": versus(decision),
    }


def versus(decision) -> str:
    """Challenger - champion in accuracy on the hold-out, with its 95% interval (paired
    bootstrap over the rows), for a decision that compared them."""
    comparison = ((decision.metrics or {}).get("comparison") or {}) if decision else {}
    interval = (comparison.get("intervals") or {}).get("accuracy")
    if not interval:
        return "-"
    if interval.get("low") is None:
        return f"{interval['diff']:+.3f}"
    return f"{interval['diff']:+.3f} [{interval['low']:+.3f}, {interval['high']:+.3f}]"


@functools.cache
def first_model():
    """v1, the model the story compares against: loaded (and its sha256 checked) once."""
    from conveyor import api

    return api.load_model(HERE, "retail", version=1).model


def accuracy(model, batch) -> float:
    features = list(getattr(model, "feature_names_in_", batch.columns.drop("purchased")))
    return float((model.predict(batch[features]) == batch["purchased"]).mean())


def oracle(week: int):
    """The best one could hope for: the project's model and preprocessing, trained on the
    week's own behaviour (other customers of the same week: another seed)."""
    from conveyor_sklearn.preprocess import build_pipeline, feature_columns
    from sklearn.ensemble import HistGradientBoostingClassifier

    same_week = retail_data.generate_week(week, seed=retail_data.SEED + 1)
    features = feature_columns(same_week, target="purchased", id_column="event_id")
    model = build_pipeline(same_week[features],
                           HistGradientBoostingClassifier(max_iter=200, random_state=0))
    return model.fit(same_week[features], same_week["purchased"])


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="retail: the model in service, week by week")
    for column in ("week", "behaviour", "served by", "drift", "accuracy", "never retrained",
                   "trained on week", "retraining", "challenger - champion (95% CI)"):
        table.add_column(column, justify="right" if column != "retraining" else "left")
    for row in rows:
        table.add_row(
            str(row["week"]), f"{row['shift']:.0%} new", row["served_by"],
            pct(row["drift_share"]), pct(row["accuracy"]), pct(row["never_retrained"]),
            pct(row["trained_on_week"]),
            row["decision"] + (f" -> v{row['new_champion']}" if row["new_champion"] else ""),
            row["versus"])
    Console(width=140).print(table)
    print("  drift: share of features that drifted; accuracy: of the model in service on the week's\n"
          "  batch; never retrained: the first model; trained on week: a model trained on that\n"
          "  week's own behaviour, the best one could hope for; challenger - champion: accuracy\n"
          "  on the hold-out rows both were scored on, with its 95% interval (paired bootstrap)")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weeks = [r["week"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=120)
    ax.plot(weeks, [r["accuracy"] for r in rows], "o-", label="with automatic retraining")
    ax.plot(weeks, [r["never_retrained"] for r in rows], "s--", label="never retrained")
    ax.plot(weeks, [r["trained_on_week"] for r in rows], ":", color="grey",
            label="trained on that week (reference)")
    for row in rows:
        if row["new_champion"]:  # promoted after that week's batch: it serves from the next
            ax.axvline(row["week"] + 0.5, color="green", alpha=0.35)
            ax.annotate(f"v{row['new_champion']} promoted", (row["week"] + 0.5, 0.885),
                        color="green", ha="center", fontsize=8)
    ax.axvspan(retail_data.SHIFT_START - 0.5, retail_data.SHIFT_START + retail_data.SHIFT_WEEKS
               - 0.5, color="orange", alpha=0.12, label="behaviour shifting")
    ax.set(xlabel="week", ylabel="accuracy on the week's batch", ylim=(0.5, 0.9),
           title="Retail: accuracy of the model in service")
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    print(f"  wrote {path.relative_to(HERE)}")


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    raise SystemExit(main())
