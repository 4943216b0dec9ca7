"""Mirroring at the end of each run (`mirror_ended_run`, never failing it) and the
`conveyor mlflow sync` command (everything still missing, with progress and a summary)."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import conveyor

from conveyor_mlflow.settings import MlflowConfig, settings_from, shown_uri

HELP = "mirror runs, model versions and aliases to an MLflow tracking server"
DESCRIPTION = """\
Mirror this project's runs and registry to the MLflow tracking server of mlflow.tracking_uri.

Every run becomes an MLflow run (tag conveyor.run_id) with its params, metrics (as
STAGE.METRIC), tags (config hash, data versions, git commit) and artifacts; every model
version an MLflow model version (tag conveyor.version) with its gate decision; and every
alias (champion, ...) an MLflow alias. `conveyor run` mirrors at its end; a mirror that
fails there (server down) is only a warning, and `sync` (or the next run) catches up.
Only what MLflow lacks is written: syncing twice changes nothing.

examples:
  conveyor mlflow sync
  conveyor mlflow sync mlflow.tracking_uri=http://mlflow.internal:5000
  conveyor mlflow sync --recent 50
"""


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="mlflow_command", metavar="ACTION")
    sync = sub.add_parser(
        "sync", help="mirror every run, model version and alias MLflow does not have yet",
        description="Compare the project's runs, model versions and aliases with what the "
                    "MLflow server has (by their conveyor.* tags) and mirror what is missing "
                    "or out of date. Config overrides (key=value) may follow, e.g. "
                    "mlflow.tracking_uri=http://host:5000.")
    sync.add_argument("--recent", type=int, metavar="N",
                      help="compare only the newest N runs (default: all of them; model "
                           "versions and aliases are always compared whole)")
    sync.add_argument("--quiet", "-q", action="store_true", help="print the summary only")


def run(args: argparse.Namespace, app: Any) -> int:
    if getattr(args, "mlflow_command", None) != "sync":
        raise conveyor.UsageError("say what to do: conveyor mlflow sync",
                                  hint="see `conveyor mlflow sync --help`")
    if args.recent is not None and args.recent < 1:
        raise conveyor.UsageError(f"--recent {args.recent}: give a number of runs, 1 or more")
    config = app.config
    settings = settings_from(config.data)
    if not settings.tracking_uri:
        raise conveyor.ConfigError(
            "config key 'mlflow.tracking_uri' is not set: there is no MLflow server to mirror to",
            hint="set it in conveyor.yaml (mlflow: {tracking_uri: http://HOST:5000}) or on the "
                 "command line: conveyor mlflow sync mlflow.tracking_uri=http://HOST:5000")
    uri = shown_uri(settings.tracking_uri)
    project = str(config.data.get("project") or app.project_dir.name)
    say = (lambda line: None) if args.quiet else (lambda line: print(f"  {line}", flush=True))
    print(f"mirroring {project} to {uri} (experiment "
          f"'{settings.experiment or project}')", flush=True)
    started = time.monotonic()
    store = app.store()
    try:
        summary = _sync(settings, project, store, say, recent=args.recent)
    except Exception as exc:
        if isinstance(exc, conveyor.ConveyorError):
            raise
        raise conveyor.StoreError(f"mirroring to {uri} failed: {reason(exc, settings)}",
                                  hint="what was mirrored before the failure stays; run "
                                       "`conveyor mlflow sync` again to finish") from None
    finally:
        store.close()
    state = "mirrored" if summary.changed else "already up to date:"
    print(f"{state} {summary.line()} in {time.monotonic() - started:.1f}s")
    if summary.skipped:
        print(f"not uploaded (above mlflow.max_artifact_mb={settings.max_artifact_mb:g}): "
              f"{len(summary.skipped)} artifact(s), listed in each run's "
              "conveyor.skipped_artifacts tag")
    return 0


def mirror_ended_run(run: Any, status: str) -> None:
    """`conveyor_after_run`: mirror the run that is ending, and whatever earlier runs, versions
    and aliases MLflow lacks. A failure is one warning line, never the run's failure."""
    settings = settings_from(run.config)  # checked with the config, before the run began
    if not settings.tracking_uri or not settings.enabled:
        return
    from conveyor.store import open_store

    uri = shown_uri(settings.tracking_uri)
    started = time.monotonic()
    try:
        # Resolved as the run's own store was (command line > environment > conveyor.yaml):
        # the composed config's store.url is only the yaml's, not what the run wrote to.
        store = open_store(run.project_dir)
        try:
            summary = _sync(settings, run.project, store, _catching_up(run.id),
                            current=(run.id, status), recent=max(1, settings.catch_up))
        finally:
            store.close()
    except (Exception, KeyboardInterrupt) as exc:
        # Ctrl-C while mirroring an ending run stops the mirror, not the run's own ending.
        print(f"warning: mlflow: run {run.id} is not mirrored to {uri}: "
              f"{reason(exc, settings)}; the next run or `conveyor mlflow sync` mirrors it",
              file=sys.stderr, flush=True)
        return
    earlier = f" (with {summary.runs - 1} earlier)" if summary.runs > 1 else ""
    print(f"mlflow: run {run.id} mirrored to {uri}{earlier} in "
          f"{time.monotonic() - started:.1f}s: {summary.line()}", flush=True)


def _catching_up(current: str) -> Callable[[str], None]:
    """Progress at the end of a run: a line per earlier run caught up and per artifact left
    out; the run's own mirror is the summary line."""

    def say(line: str) -> None:
        if (line.startswith("run ") and not line.startswith(f"run {current} ")) \
                or "not uploaded" in line:
            print(f"mlflow: {line}", flush=True)

    return say


def _sync(settings: MlflowConfig, project: str, store: Any, say: Callable[[str], None], *,
          current: tuple[str, str] | None = None, recent: int | None = None) -> Any:
    from conveyor_mlflow.mirror import Mirror, client_environment

    with client_environment(settings):
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=settings.tracking_uri,
                              registry_uri=settings.tracking_uri)
        return Mirror(client, settings, project, store, say).sync(current=current,
                                                                  recent=recent)


def reason(exc: BaseException, settings: MlflowConfig) -> str:
    """Why a mirror failed, in a few words, without the tracking URI's password."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyboardInterrupt):
        text = "interrupted"
    elif "Connection refused" in text or "NewConnectionError" in text:
        text = "connection refused (is the server running?)"
    elif "timed out" in text.lower() or "ReadTimeout" in text:
        text = f"no answer within mlflow.timeout={settings.timeout:g}s"
    elif "Name or service not known" in text or "nodename nor servname" in text:
        text = "unknown host"
    else:
        text = f"{type(exc).__name__}: {text.strip().splitlines()[0]}"
        if len(text) > 300:
            text = text[:297] + "..."
    uri = settings.tracking_uri or ""
    password = re.match(r"^[a-z+]+://[^:/@]*:([^@/]+)@", uri)
    if password:
        text = text.replace(password.group(1), "***")
    return text


SYNC = conveyor.CliCommand("mlflow", HELP, configure, run, description=DESCRIPTION)

__all__ = ["SYNC", "mirror_ended_run", "reason"]
