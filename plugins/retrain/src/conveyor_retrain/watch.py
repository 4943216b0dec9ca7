"""`conveyor watch --inbox DIR`: each new batch file, exactly once, monitored then the policy applied.

`--feedback DIR` beside (or instead of) the inbox: each new feedback file (purchases, clicks,
delayed labels) is joined once by `conveyor feedback` (conveyor-monitor's documented
`conveyor_monitor.feedback.record_feedback`: one batch per period, never recorded twice for
the same content), then the policy is applied, as for a monitored batch.

What was processed lives in `.conveyor/watch/state.json` (rewritten whole through a temp file
and a rename), keyed by the file's sha256: a file is "started" before its batch is monitored
and "done" after the policy was applied. After a crash (`kill -9` mid-retrain, say) a started
file is taken up again: its batch is not monitored twice (the monitoring record of the same
content is reused) and the policy is applied again, which cannot half-promote (alias moves are
single transactions). A file whose content changes later is a new batch.

Watchers on the same inbox take turns file by file (`locks.inbox_lock`): each re-reads the state
under the lock, so two or four `watch` processes still monitor each batch once and apply the
policy once per batch; `retrain.apply` holds the model's decision lock too, so a
`conveyor retrain` by hand waits for a watcher's decision instead of racing it.

A batch that cannot be scored (a missing column, not a table, no rows, too many rows breaking
the schema) is recorded by the monitor as invalid, with its reason, and is done: it is never
processed again, and the loop goes on. A broken project config (a schema that does not parse,
or shares no column with the model's data) stops the loop with exit 2, naming the file; the
batch stays pending. `--inbox` with a recommender champion stops at once with exit 2 (use
`--feedback DIR`).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conveyor import ConfigError, ConveyorError, Session, UsageError
from conveyor.durations import parse_duration
from conveyor.store import sha256_file

from conveyor_retrain import locks, retrain

SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")
SETTLE_SECONDS = 2.0  # a file written in place (not renamed in) must be still this long
def parse_every(text: str) -> float:
    """`--every` in seconds (`conveyor.durations.parse_duration`; a bare number is seconds)."""
    seconds = parse_duration(text, bare_seconds=True)
    if seconds is None:
        raise UsageError(f"--every '{text}' is not a duration", hint="e.g. 30s, 10m, 1h")
    return seconds


class WatchState:
    def __init__(self, project_dir: Path) -> None:
        self.path = project_dir / ".conveyor" / "watch" / "state.json"
        self.reload()

    def reload(self) -> None:
        """Read the state again: another watcher may have processed files meanwhile."""
        try:
            self.files: dict[str, dict[str, Any]] = json.loads(self.path.read_text())["files"]
        except FileNotFoundError:
            self.files = {}
        except (ValueError, KeyError) as exc:
            raise UsageError(f"the watch state {self.path} is damaged ({exc})",
                             hint="move it aside to process every inbox file again") from exc

    def status(self, sha: str) -> str | None:
        return (self.files.get(sha) or {}).get("status")

    def mark(self, sha: str, **fields: Any) -> None:
        self.files[sha] = {**self.files.get(sha, {}), **fields, "at": time.time()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump({"files": self.files}, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


def pending(inbox: Path, state: WatchState, *, settle: float = SETTLE_SECONDS
            ) -> list[tuple[Path, str]]:
    """Files of the inbox not yet done, oldest name first, with their sha256.

    A file still exactly as it was when it was finished (same path, size and mtime) is not
    hashed again: an inbox of a year of batches costs one stat per file per look."""
    finished = {tuple(entry["stamp"]) for entry in state.files.values()
                if entry.get("status") in ("done", "failed") and entry.get("stamp")}
    found = []
    now = time.time()
    for path in sorted(inbox.iterdir()):
        if (not path.is_file() or path.name.startswith((".", "~"))
                or path.suffix.lower() not in SUFFIXES or now - path.stat().st_mtime < settle):
            continue
        if stamp(path) in finished:
            continue
        sha = sha256_file(path)
        if state.status(sha) not in ("done", "failed"):
            found.append((path, sha))
    return found


def process(session: Session, path: Path, sha: str, state: WatchState,
            log: Callable[[str], None]) -> dict[str, Any]:
    """Monitor one batch file, then apply the retraining policy; record both in the state."""
    from conveyor_monitor.records import Monitoring

    project_dir = session.project_dir
    name = _display(path, project_dir)
    state.mark(sha, file=name, status="started", stamp=stamp(path))
    store = session.store()
    try:
        earlier = Monitoring(store).batches(source_sha256=sha)
    finally:
        store.close()
    if earlier:
        batch = earlier[-1]
        log(f"watch: {name}: monitored before the restart (batch {batch.id}), not again")
    else:
        batch = session.host.hook.conveyor_monitor_batch(
            project_dir=project_dir, data=path, labels=None, model=None, quiet=True,
            host=session.host, session=session)
        if batch is None:
            raise UsageError("no installed plugin monitors batches (conveyor_monitor_batch)",
                             hint="pip install conveyor-monitor")
    log(f"watch: {name}: batch {batch.id} {batch.status}"
        + (f", drift share {batch.drift_share:.0%}" if batch.drift_share is not None else "")
        + "".join(f", {k} {v:.3f}" for k, v in sorted(batch.performance.items()))
        + (f" ({batch.message})" if batch.message and batch.status != "ok" else ""))
    state.mark(sha, batch=batch.id, batch_status=batch.status)
    decision = retrain.apply(session, trigger=batch.id, log=log)
    announce(session, decision)
    log(f"watch: {name}: retrain {decision.outcome}: {decision.reasons[-1] if decision.reasons else ''}")
    state.mark(sha, status="done", decision=decision.id, outcome=decision.outcome)
    return {"file": name, "batch": batch.id, "status": batch.status, "decision": decision.id,
            "outcome": decision.outcome}


def process_feedback(session: Session, path: Path, sha: str, state: WatchState,
                     log: Callable[[str], None]) -> dict[str, Any]:
    """Join one feedback file (`conveyor feedback`: a batch per period, recorded once per
    content), then apply the retraining policy; record both in the state."""
    from conveyor_monitor.feedback import record_feedback

    name = _display(path, session.project_dir)
    state.mark(sha, file=name, status="started", stamp=stamp(path), kind="feedback")
    outcome = record_feedback(session, path)
    for batch in outcome.batches:
        log(f"watch: {name}: feedback batch {batch.id} {batch.status}"
            + "".join(f", {k} {v:.3f}" for k, v in sorted(batch.performance.items()))
            + (" (recorded before the restart)" if outcome.reused else ""))
    if not outcome.batches:
        state.mark(sha, status="done", outcome="no_period")
        log(f"watch: {name}: no period to record")
        return {"file": name, "kind": "feedback", "batches": [], "outcome": "no_period"}
    last = outcome.batches[-1]
    state.mark(sha, batch=last.id, batch_status=last.status)
    decision = retrain.apply(session, trigger=last.id, log=log)
    announce(session, decision)
    log(f"watch: {name}: retrain {decision.outcome}: "
        f"{decision.reasons[-1] if decision.reasons else ''}")
    state.mark(sha, status="done", decision=decision.id, outcome=decision.outcome)
    return {"file": name, "kind": "feedback", "batches": [b.id for b in outcome.batches],
            "status": last.status, "decision": decision.id, "outcome": decision.outcome}


def watch(session: Any, inbox: Path | None, *, every: float, once: bool,
          feedback: Path | None = None,
          log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Monitor every batch file arriving in `inbox`, and join every feedback file arriving in
    `feedback` (`conveyor feedback`), applying the retraining policy after each, in the
    command's `conveyor.Session`, until interrupted (or once, with `once`)."""
    project_dir = session.project_dir
    folders = [(folder, handler) for folder, handler in ((inbox, process),
                                                         (feedback, process_feedback))
               if folder is not None]
    if not folders:
        raise UsageError("say what to watch: --inbox DIR (batches), --feedback DIR (feedback)")
    for folder, handler in folders:
        if not folder.is_dir():
            option = "--inbox" if handler is process else "--feedback"
            raise UsageError(f"{option} {folder} is not a folder",
                             hint=f"create it, or pass {option}")
    retrain.check_policy(session)  # a bad policy stops here (exit 2), not at every batch
    if inbox is not None:
        refuse_recommender_inbox(session)
    state = WatchState(project_dir)
    handled: list[dict[str, Any]] = []
    log("watch: " + " and ".join(_display(f, project_dir) for f, _ in folders)
        + f" every {every:g}s" + (" (once)" if once else "") + "; Ctrl-C stops")
    while True:
        for folder, handler in folders:
            for path, sha in pending(folder, state, settle=0.0 if once else SETTLE_SECONDS):
                # Check-then-mark under the folder's lock: a second watcher on the same folder
                # waits, then finds the file done and skips it.
                with locks.inbox_lock(project_dir, folder, log=log):
                    state.reload()
                    if state.status(sha) in ("done", "failed"):
                        continue
                    try:
                        handled.append(handler(session, path, sha, state, log))
                    except ConfigError:
                        # The project is broken (its schema does not parse, say), not the
                        # file: stop (exit 2) and leave it to be taken up once it is fixed.
                        raise
                    except ConveyorError as exc:
                        # One bad file must not stop the loop; not retried until it changes.
                        state.mark(sha, file=_display(path, project_dir), status="failed",
                                   stamp=stamp(path), error=exc.message)
                        log(f"watch: {_display(path, project_dir)}: failed: {exc.message}")
                        handled.append({"file": path.name, "status": "failed",
                                        "error": exc.message})
        if once:
            return handled
        time.sleep(every)


def refuse_recommender_inbox(session: Any) -> None:
    """`--inbox` monitors batches of feature rows, which a recommender champion has no
    prediction for: stop with exit 2 before the first file rather than fail every one of them
    (`conveyor.serving.require_not_recommender`)."""
    from conveyor import api
    from conveyor.serving import require_not_recommender

    try:
        loaded = api.load_model(session)
    except UsageError:
        return  # no champion yet, or several models: each batch's monitor check tells
    require_not_recommender(
        loaded, command="conveyor watch --inbox",
        does="monitors batches of classifiers and regressors",
        instead="watch a recommender's feedback instead: `conveyor watch --feedback DIR` joins "
                "each new events file like `conveyor feedback --data FILE` (online metrics and "
                "drift, see the monitor plugin's README, 'Feedback that arrives later')")


def announce(session: Any, decision: Any) -> None:
    """Tell people through `conveyor_alert`: every decision, and promotions on their own."""
    from conveyor.alerts import Alert, fire

    model = f"{decision.model_name}:{decision.challenger_version or decision.champion_version}"
    details = decision.as_dict()
    if decision.outcome != "no_action":
        fire(session, Alert(kind="retrain_decision",
                         severity="warning" if decision.outcome in ("blocked", "skipped") else "info",
                         message=f"retrain {decision.outcome}: " + (decision.reasons[-1]
                                                                    if decision.reasons else ""),
                         model=model, details=details))
    if decision.outcome == "promoted":
        fire(session, Alert(kind="promotion", severity="info",
                         message=f"{decision.model_name} v{decision.challenger_version} is the new "
                                 f"champion (was v{decision.champion_version})",
                         model=model, details=details))


def stamp(path: Path) -> tuple[str, int, int]:
    """What a file's identity is taken from before hashing it: path, size, modification time."""
    info = path.stat()
    return str(path.resolve()), info.st_size, info.st_mtime_ns


def _display(path: Path, project_dir: Path) -> str:
    try:
        return path.resolve().relative_to(project_dir).as_posix()
    except ValueError:
        return str(path)
