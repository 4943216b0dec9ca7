"""`conveyor run` and `conveyor plan`: Hydra's command-line grammar, unchanged."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from conveyor.cli.app import print_json
from conveyor.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConveyorError, UsageError
from conveyor.session import Session

RUN_HELP = """\
usage: conveyor run [--force] [--quiet] [OVERRIDE ...] [HYDRA FLAGS]

Run the project's pipeline. Stages whose fingerprint (stage type and version, settings, inputs,
data files) matches a completed earlier result are taken from the cache; the others run, each
with the reason printed. Every run is recorded in .conveyor/store.db.

overrides (Hydra's grammar):
  key=value                 set a value              model.params.max_depth=6
  +key=value / ~key         add / delete a key       +model.params.l2_regularization=0.1
  group=option              choose a config          model=random_forest

hydra flags:
  -m, --multirun            sweep: model.params.max_depth=3,6,9 (each job its own run)
      hydra/launcher=joblib run sweep jobs in parallel (hydra-joblib-launcher)
      hydra/sweeper=optuna  hyperparameter search (hydra-optuna-sweeper)
  --cfg job|hydra|all       print the resolved config and run nothing
  --info, -sc install=bash  Hydra's info, shell completion

options:
  --force                   run every stage even when cached, and read every data file
                            again (not trusting its size and modification time)
  --quiet                   no per-stage progress
"""

PLAN_HELP = """\
usage: conveyor plan [--json] [OVERRIDE ...]

Show the stage graph of the resolved config and, for every stage, whether `conveyor run` with
the same overrides would run it or take it from the cache, and why (which setting, data file,
input or code changed since the cached result). Runs nothing.
"""


def _own_flags(args: list[str], allowed: set[str]) -> tuple[set[str], list[str]]:
    own, rest = set(), []
    for arg in args:
        if arg in allowed:
            own.add(arg)
        else:
            rest.append(arg)
    return own, rest


def run(args: list[str], app: Session) -> int:
    own, rest = _own_flags(args, {"--force", "--quiet", "-h", "--help"})
    if own & {"-h", "--help"}:
        print(RUN_HELP)
        return EXIT_OK
    from conveyor.config.hydra_app import needs_hydra_runtime

    if any(a.startswith(("install=", "uninstall=")) for a in rest) and \
            any(a in ("-sc", "--shell-completion") for a in rest):
        raise UsageError("use `eval \"$(conveyor completion bash)\"` to install completion",
                         hint="Hydra's own installer expects a one-word program name")
    if any(a.startswith("query=") for a in rest):
        from conveyor.cli.completion_cmd import rewrite_query_line
        from conveyor.config import search_path_override

        rewrite_query_line(search_path_override(app.host.contributions.config_dirs))
    if needs_hydra_runtime(rest):
        return _run_hydra(rest, app, force="--force" in own)
    from conveyor.progress import StageDisplay
    from conveyor.runner import Runner

    _reject_flags(rest)
    config = app.compose(rest)
    result = Runner(app.host, config, display=StageDisplay(quiet="--quiet" in own),
                    force="--force" in own, session=app).run()
    return report(result)


def report(result: Any) -> int:
    """Print a run's outcome; exit 1 when a gate or policy said no."""
    shown = "  ".join(f"{k}={v:.4g}" for k, v in sorted(result.metrics.items()))
    print(f"run {result.run_id} completed" + (f" · {shown}" if shown else ""))
    for verdict in result.verdicts:
        print(("✓ " if verdict["ok"] else "✗ ") + str(verdict.get("message", "")))
    return EXIT_OK if all(v["ok"] for v in result.verdicts) else EXIT_FAILED


def _reject_flags(args: list[str]) -> None:
    for arg in args:
        if arg.startswith("-"):
            raise UsageError(f"unknown option {arg} for `conveyor run`",
                             hint="see `conveyor run --help`; overrides look like key=value")


def _run_hydra(args: list[str], app: Session, *, force: bool) -> int:
    from hydra.errors import OverrideParseException

    from conveyor import collection
    from conveyor.config import typed_keys_to_add
    from conveyor.config.hydra_app import run_with_hydra

    # A sweep's parent may run for hours (an Optuna study, a launcher waiting on its jobs):
    # it collects normally from the start; jobs run in-process resume in their Runner anyway.
    collection.resume()

    multirun = any(a in ("-m", "--multirun") for a in args)
    try:
        first = _first_job(args)
    except OverrideParseException as exc:
        raise UsageError(f"cannot parse the command-line override: {str(exc).splitlines()[0]}",
                         hint="overrides use Hydra's grammar: key=value, +key=value, ~key, "
                              "group=option") from exc
    if multirun:
        # Compose the first job up front, so bad config stops the sweep with exit 2.
        app.compose(first)
    # Hydra's runtime composes the overrides itself: a typed key the YAML lacks goes as ++key.
    adding: set[str] = set()
    completing = any(a in ("-sc", "--shell-completion") for a in args)
    if not completing and any(_plain_override(a) for a in first):
        with contextlib.suppress(ConveyorError):  # bad config: Hydra's runtime says so itself
            adding = typed_keys_to_add(app.project_dir, first, app.host)
    args = [f"++{a}" if _plain_override(a) and a.split("=", 1)[0] in adding else a for a in args]
    invocation = run_with_hydra(app, args, force=force)
    if not multirun:
        return EXIT_OK
    return _summarise_sweep(app, invocation, typed_keys=adding)


def _plain_override(arg: str) -> bool:
    return "=" in arg and not arg.startswith(("-", "+", "~"))


def _first_job(args: list[str]) -> list[str]:
    """The overrides of one representative job: the first value of each choice sweep and the
    lower bound of each interval, so every key and group choice is checked before the sweep."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import IntervalSweep

    overrides = [a for a in args if not a.startswith("-") and "=" in a
                 and not a.lstrip("+~").startswith("hydra")]
    first = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_discrete_sweep():
            first.append(f"{key}={next(iter(override.sweep_string_iterator()))}")
        elif override.is_sweep_override():
            sweep = override.value()
            if isinstance(sweep, IntervalSweep):
                low = sweep.start
                is_int = "int" in (sweep.tags or set()) or override.input_line.find("int(") >= 0
                first.append(f"{key}={int(low) if is_int else low}")
        else:
            first.append(override.input_line)
    return first


def _summarise_sweep(app: Session, invocation: str, *, typed_keys: set[str]) -> int:
    from conveyor.promotion import better
    from conveyor.store import Registry, Runs

    jobs_dir = app.project_dir / ".conveyor" / "hydra" / "multirun" / invocation / "jobs"
    jobs = sorted((json.loads(p.read_text()) for p in jobs_dir.glob("*.json")),
                  key=lambda j: j["job"]) if jobs_dir.is_dir() else []
    if not jobs:
        print("the sweep ran no job")
        return EXIT_FAILED
    store = app.store()
    primary, best = None, None
    directions: dict[str, str] | None = None
    print(f"\nsweep: {len(jobs)} jobs")
    for job in jobs:
        # As the user wrote them: a typed key the YAML lacked went to Hydra as ++key.
        overrides = " ".join(o.removeprefix("++") if o.startswith("++") and
                             o[2:].split("=", 1)[0] in typed_keys else o
                             for o in job["overrides"])
        if job.get("error"):
            where = f"run {job['run_id']}" if job["run_id"] else "before running"
            print(f"  job {job['job']:<3} failed ({where}): {job['error']}  {overrides}")
            continue
        if primary is None:
            config = json.loads(Runs(store).get(job["run_id"]).config or "{}")
            evaluate = config.get("evaluate") or {}
            primary = evaluate.get("primary") or next(iter(evaluate.get("metrics") or []), None)
        values = Runs(store).metrics(job["run_id"])
        if directions is None:  # as the evaluate stage reported them (its scorers know)
            directions = next((v.gate.get("directions") for v in Registry(store).versions()
                               if v.run_id == job["run_id"] and v.gate.get("directions")), None)
        value = values.get(primary) if primary else None
        shown = f"{primary}={value:.4g}" if value is not None else ""
        print(f"  job {job['job']:<3} {job['run_id']}  {shown:<18} {overrides}")
        if value is not None and (best is None or better(value, best[1], primary,
                                                         directions)):
            best = (job["run_id"], value, overrides)
    if best:
        print(f"best run: {best[0]} with {primary}={best[1]:.4g} ({best[2]})")
        _promote_best(store, best[0], primary,
                      f"best of sweep by {primary}={best[1]:.4g} ({best[2]})")
    # A gate saying no to some trials is what a search is for; only failures count here.
    return max((job["exit_code"] for job in jobs if job.get("error")), default=EXIT_OK)


def _promote_best(store: Any, run_id: str, primary: str, reason: str) -> None:
    """The sweep's best run: `conveyor.promotion.best_of_sweep` decides, this prints."""
    from conveyor.promotion import best_of_sweep
    from conveyor.store import Registry

    for promotion in best_of_sweep(Registry(store), run_id, primary, reason):
        print(("✓ " if promotion.promoted else "✗ ") + promotion.message)


def plan(args: list[str], app: Session) -> int:
    own, rest = _own_flags(args, {"--json", "--force", "-h", "--help"})
    if own & {"-h", "--help"}:
        print(PLAN_HELP)
        return EXIT_OK
    _reject_flags(rest)
    from conveyor.progress import StageDisplay
    from conveyor.runner import Runner

    config = app.compose(rest)
    runner = Runner(app.host, config, display=StageDisplay(quiet=True), force="--force" in own,
                    session=app)
    _, decisions, _ = runner.plan()
    rows: list[dict[str, Any]] = [
        {"stage": d.stage.name, "uses": d.stage.uses, "needs": list(d.stage.needs),
         "action": "run" if d.runs else "skip", "reason": d.reason,
         "fingerprint": d.fingerprint[:12]} for d in decisions]
    if "--json" in own:
        print_json(rows)
        return EXIT_OK
    from rich.table import Table

    from conveyor.cli.app import console

    table = Table(title=f"plan · {config.get('project')}", title_justify="left")
    for column in ("stage", "uses", "needs", "action", "why"):
        table.add_column(column, overflow="fold")
    for row in rows:
        colour = "yellow" if row["action"] == "run" else "cyan"
        table.add_row(row["stage"], row["uses"], ", ".join(row["needs"]),
                      f"[{colour}]{row['action']}[/]", row["reason"])
    console().print(table)
    return EXIT_OK


__all__ = ["EXIT_USAGE", "plan", "run"]
