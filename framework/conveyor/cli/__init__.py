"""The `conveyor` command line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from conveyor.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, ConveyorError, UsageError

DESCRIPTION = """\
Conveyor runs a whole machine-learning system described in layered YAML: data, training,
tuning, evaluation, tracking, a model registry, serving and monitoring.

A project is a folder with a conveyor.yaml. Start one, run it, look at what it recorded:

  conveyor init churn --template classification
  cd churn
  conveyor run                                        # the train pipeline, end to end
  conveyor run model=random_forest model.params.n_estimators=300
  conveyor run --multirun model.params.max_depth=3,6,9
  conveyor plan model.params.max_depth=8              # what would run, and why
  conveyor runs list
"""

EPILOG = """\
exit codes: 0 ok · 1 a stage failed or a gate said no · 2 bad usage, config or plugin
            70 internal error (a bug: please report it) · 130 interrupted
every command takes config overrides (key=value, Hydra's grammar) after its options
a team's shared store: store.url=postgresql+psycopg://USER@HOST:5432/DB (or CONVEYOR_STORE_URL;
            the password from PGPASSWORD or ~/.pgpass); default .conveyor/store.db (SQLite);
            move a project's history there: conveyor store copy --to URL
more: conveyor COMMAND --help · docs: README.md and docs/ in the Conveyor repository"""

PASSTHROUGH = {"run", "plan"}


def build_parser(host) -> argparse.ArgumentParser:
    from conveyor.cli import (
        completion_cmd,
        init_cmd,
        models_cmd,
        plugins_cmd,
        runs_cmd,
        store_cmd,
    )

    parser = argparse.ArgumentParser(
        prog="conveyor", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-C", "--project", metavar="DIR", type=Path,
                        help="run as if started in DIR (default: the current folder)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    commands.add_parser("run", help="run the project's pipeline (Hydra overrides welcome)",
                        add_help=False)
    commands.add_parser("plan", help="show the stage graph and what would run, and why",
                        add_help=False)
    init_cmd.configure(commands, host)
    runs_cmd.configure(commands)
    models_cmd.configure(commands)
    plugins_cmd.configure(commands)
    store_cmd.configure(commands)
    completion_cmd.configure(commands)
    for command in host.contributions.cli_commands.values():
        # A description written over several lines (examples, say) is shown as written; a
        # one-line one is wrapped to the terminal.
        description = command.description or command.help
        sub = commands.add_parser(command.name, help=command.help, description=description,
                                  formatter_class=argparse.RawDescriptionHelpFormatter
                                  if "\n" in description.strip() else argparse.HelpFormatter)
        command.configure(sub)
        sub.set_defaults(handler=lambda args, app, c=command: c.run(args, app))
    return parser


def main(argv: list[str] | None = None) -> None:
    from conveyor import collection

    # OpenMP threads that wait at a barrier sleep instead of spinning on a core another thread
    # (or process) needs; read once, when the OpenMP runtime loads, so before any stage imports
    # it. A policy the user set stands. See conveyor.threads.
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    collection.pause()
    from conveyor.threads import meter

    meter().prime()  # start-up is the window the first stage's busy cores are counted over
    code = run_cli(list(sys.argv[1:] if argv is None else argv))
    collection.skip_final_collection()
    sys.exit(code)


def run_cli(argv: list[str]) -> int:
    from conveyor.secrets import remember_overrides, scrub_logs

    debug = "--debug" in argv[: _command_index(argv)]
    remember_overrides(argv)
    scrub_logs()
    try:
        return _dispatch(argv)
    except ConveyorError as exc:
        from conveyor.cli.app import print_error

        if debug:
            import traceback

            traceback.print_exc()
        print_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        # Not a user error: a bug in Conveyor or a plugin. One line, unless --debug.
        if debug:
            raise
        from conveyor.secrets import scrub

        print(f"internal error: {type(exc).__name__}: {scrub(str(exc))}\n"
              "  this is a bug in Conveyor or a plugin; run again with --debug for the "
              "traceback and report it", file=sys.stderr)
        return EXIT_INTERNAL


def _command_index(argv: list[str]) -> int:
    index = 0
    while index < len(argv) and argv[index].startswith("-"):
        index += 2 if argv[index] in ("-C", "--project") else 1
    return index


def _dispatch(argv: list[str]) -> int:
    from conveyor.session import Session

    split = _command_index(argv)
    global_args, rest = argv[:split], argv[split:]
    directory: Path | None = None
    if "-C" in global_args or "--project" in global_args:
        flag = "-C" if "-C" in global_args else "--project"
        position = global_args.index(flag)
        if position + 1 >= len(global_args):
            raise UsageError(f"{flag} needs a folder")
        directory = Path(global_args[position + 1])
        if not directory.is_dir():
            raise UsageError(f"{flag} {directory}: no such folder")
    if "--version" in global_args:
        from importlib import metadata

        print(f"conveyor {metadata.version('conveyor')}")
        return 0
    unknown = [a for a in global_args if a not in ("-C", "--project", "--debug", "-h", "--help")
               and a != str(directory)]
    if unknown:
        raise UsageError(f"unknown option {unknown[0]}", hint="see `conveyor --help`")

    command = rest[0] if rest else None
    overrides = [a for a in rest[1:] if _is_override(a)]
    from conveyor.store.location import set_command_line

    set_command_line(overrides)  # store.url= / store.artifacts= for every store opened
    with Session(directory=directory, overrides=overrides, debug="--debug" in global_args) as session:
        return _command(command, rest, global_args, session)


def _is_override(arg: str) -> bool:
    """key=value, +key=value, ++key=value or ~key (Hydra's grammar)."""
    return (arg.startswith("~") and len(arg) > 1) or ("=" in arg and not arg.startswith("-"))


def _command(command: str | None, rest: list[str], global_args: list[str], app: Any) -> int:
    host = app.host

    if command in PASSTHROUGH:
        from conveyor.cli import run_cmd

        # `run` resumes garbage collection itself, once its imports are done (Runner.run).
        handler = run_cmd.run if command == "run" else run_cmd.plan
        return handler(rest[1:], app)
    parser = build_parser(host)
    if command is None:
        parser.print_help()
        return 0 if ("-h" in global_args or "--help" in global_args) else EXIT_USAGE
    args, extra = parser.parse_known_args(rest)
    if any(not _is_override(a) for a in extra):
        parser.parse_args(rest)  # argparse's own message and exit code for what it does not know
    # Every command takes config overrides (key=value, Hydra's grammar) after its options, as
    # `conveyor run` does: those its parser did not take itself are the session's.
    app.set_overrides([*(getattr(args, "overrides", None) or []), *extra])
    from conveyor import collection

    collection.resume()  # before commands that may serve or watch for hours
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.parse_args([*rest, "--help"])
        return EXIT_USAGE
    return handler(args, app) or 0


