"""Conveyor's retraining plugin: threshold-based policies that retrain, compare and promote.

`conveyor retrain` applies the project's `retrain:` policy once; `conveyor watch --inbox DIR`
monitors each new batch file (through whichever plugin answers `conveyor_monitor_batch`) and
applies the policy after each. Monitoring results come from the store, never from another
plugin's code; the challenger trains through the project's own pipeline (`conveyor.api.run`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import conveyor

from conveyor_retrain.settings import SCHEMA

__version__ = "0.1.0"

RETRAIN_HELP = """\
Apply the project's retraining policy (the `retrain:` section) once.

It reads the batches `conveyor monitor` recorded for the champion's model, decides whether they
breach `retrain.when` (`consecutive` batches in a row, after the `cooldown`), and if so trains a
challenger with the project's own pipeline on the newest labelled batches (`retrain.window`),
scores challenger and champion on the same hold-out rows of the newest batch, and promotes the
challenger only if it clears `retrain.promote_if`. Every decision is recorded with its reasons.

A recommender (`retrain.source_key: recsys.source`, `retrain.compare: evaluation`) trains on
its history plus the monitored feedback files, each once, and its own evaluate stage compares
it with the champion on the newest held-out period (see the plugin's README, "Recommenders").

exit codes: 0 the challenger was promoted; 1 no promotion (the policy did not trigger, too little
data, the challenger failed its gate or did not beat the champion); 2 bad usage or config.

examples:
  conveyor retrain                  # decide and act
  conveyor retrain --force          # train and compare a challenger whatever the policy says
  conveyor retrain --list --json    # the decisions so far
"""

WATCH_HELP = """\
Watch an inbox folder for batch files (.csv, .tsv, .parquet): each new file is monitored once
(drift, and performance when it carries the target column) and the retraining policy is applied
after it. Files are processed in name order, exactly once, also across restarts (a file's
content is its identity). Drop files in with a rename (or leave them still for 2 s).

examples:
  conveyor watch --inbox incoming/               # poll every 10 minutes until Ctrl-C
  conveyor watch --inbox incoming/ --every 30s
  conveyor watch --inbox incoming/ --once        # process what is there now, then stop
  conveyor watch --feedback events/ --once       # join each new feedback file (conveyor feedback)
  conveyor watch --inbox incoming/ --feedback events/

Feedback files (a recommender's purchases and clicks, a classifier's delayed labels) are joined
to what was served by `conveyor feedback`: one monitored batch per period, then the policy.
"""


@conveyor.hookimpl
def conveyor_store_tables(register: Callable[..., None]) -> None:
    from conveyor_retrain.records import TABLES

    register(TABLES)


@conveyor.hookimpl
def conveyor_config_schemas(register: Callable[[conveyor.ConfigSchema], None]) -> None:
    register(SCHEMA)


@conveyor.hookimpl
def conveyor_cli_commands(register: Callable[[conveyor.CliCommand], None]) -> None:
    register(conveyor.CliCommand("retrain", "apply the retraining policy once",
                                 _configure_retrain, _retrain, description=RETRAIN_HELP))
    register(conveyor.CliCommand("watch", "monitor each new batch in an inbox; retrain per policy",
                                 _configure_watch, _watch, description=WATCH_HELP))


def _configure_retrain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="train and compare a challenger even if the policy does not trigger")
    parser.add_argument("--list", action="store_true", help="list the recorded decisions")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _configure_watch(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--inbox", type=Path, help="folder that batches arrive in")
    parser.add_argument("--feedback", type=Path, metavar="DIR",
                        help="folder that feedback files arrive in (purchases, clicks, delayed "
                             "labels): each joined once with `conveyor feedback`")
    parser.add_argument("--every", default="10m",
                        help="how often to look for new files: 30s, 10m, 1h (default 10m)")
    parser.add_argument("--once", action="store_true",
                        help="process the files there now, then stop")
    parser.add_argument("--json", action="store_true",
                        help="print what was processed as JSON at the end (with --once)")


def _retrain(args: argparse.Namespace, app: Any) -> int:
    from conveyor_retrain import retrain, watch
    from conveyor_retrain.records import RetrainDecisions

    if args.list:
        store = app.store()
        try:
            decisions = RetrainDecisions(store).list()
        finally:
            store.close()
        if args.json:
            print(json.dumps([d.as_dict() for d in decisions], indent=2, default=str))
        else:
            for d in decisions:
                print(f"{d.id}  {d.model_name}  {d.outcome:<10} "
                      f"{d.reasons[-1] if d.reasons else ''}")
        return 0
    log = (lambda line: print(line, file=sys.stderr)) if args.json else print
    decision = retrain.apply(app, force=args.force, log=log, quiet=args.json)
    watch.announce(app, decision)
    if args.json:
        print(json.dumps(decision.as_dict(), indent=2, default=str))
    else:
        print(f"retrain {decision.outcome} (decision {decision.id})")
        for reason in decision.reasons:
            print(f"  - {reason}")
    return 0 if decision.outcome == "promoted" else 1


def _watch(args: argparse.Namespace, app: Any) -> int:
    from conveyor_retrain import watch

    def folder(path: Path | None) -> Path | None:
        return None if path is None else (path if path.is_absolute() else Path.cwd() / path
                                          ).resolve()

    handled = watch.watch(app, folder(args.inbox), feedback=folder(args.feedback),
                          every=watch.parse_every(args.every), once=args.once,
                          log=(lambda line: print(line, file=sys.stderr)) if args.json else print)
    if args.json:
        print(json.dumps(handled, indent=2))
    return 0
