"""`conveyor models list | promote | rollback | compile | history`: the model registry."""

from __future__ import annotations

import argparse
import time
from typing import Any

from conveyor.cli.app import console, print_json
from conveyor.compiled import CompiledStatus
from conveyor.session import Session
from conveyor.store import Registry
from conveyor.store.registry import CHAMPION
from conveyor.uncertainty import comparison_lines


def configure(commands: Any) -> None:
    models = commands.add_parser("models", help="registered model versions and their aliases",
                                 description="The model registry of the project.")
    sub = models.add_subparsers(dest="models_command", metavar="ACTION")
    listing = sub.add_parser(
        "list", help="every version with metrics, gate decision, aliases, inference",
        description="Every registered version: its metrics, gate decision, aliases, and how it "
                    "is scored (inference): `onnx` when its compiled form passed the parity "
                    "gate (labels identical, probabilities or values within 1e-5 on its test "
                    "rows), else `python: <reason>`; `not built yet` until first use.")
    listing.add_argument("--json", action="store_true",
                         help="the full records; `inference` is served_by, reason, sha256, "
                              "parity and converter versions (null before its first build)")
    listing.set_defaults(handler=list_models)
    promote = sub.add_parser("promote", help="make a version the champion (the gate must pass)")
    promote.add_argument("name")
    promote.add_argument("version", type=int)
    promote.add_argument("--force", action="store_true",
                         help="promote even though the gate rejected it (recorded as forced)")
    promote.add_argument("--reason", default="", help="why, for the history")
    promote.add_argument("--json", action="store_true")
    promote.set_defaults(handler=promote_model)
    rollback = sub.add_parser("rollback", help="restore the previous champion")
    rollback.add_argument("name")
    rollback.add_argument("--reason", default="")
    rollback.add_argument("--json", action="store_true")
    rollback.set_defaults(handler=rollback_model)
    compile_ = sub.add_parser(
        "compile", help="build (or --rebuild) a version's compiled form and show its status",
        description="Build a version's compiled form, check it against its Python model on "
                    "its test rows (labels identical, probabilities or values within 1e-5) "
                    "and record how it is served. A version registered by this Conveyor is "
                    "compiled at registration already, an earlier one on first use: this "
                    "shows its record, or with --rebuild builds it again (after an upgrade of "
                    "onnxruntime or skl2onnx, or a damaged compiled file).")
    compile_.add_argument("name")
    compile_.add_argument("version", type=int)
    compile_.add_argument("--rebuild", action="store_true",
                          help="build, check and record it again even if it has a record")
    compile_.add_argument("--json", action="store_true")
    compile_.set_defaults(handler=compile_model)
    history = sub.add_parser("history", help="every alias change: who, when, why")
    history.add_argument("name")
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=model_history)


def list_models(args: argparse.Namespace, app: Session) -> int:
    registry = Registry(app.store())
    versions = registry.versions()
    names = sorted({v.name for v in versions})
    aliases = {name: registry.aliases(name) for name in names}
    compiled = registry.compiled_all()
    rows = [{"name": v.name, "version": v.version, "run_id": v.run_id, "metrics": v.metrics,
             "decision": v.decision, "reasons": _reasons(v.gate),
             "comparison": v.comparison(),
             "aliases": sorted(a for a, n in aliases[v.name].items() if n == v.version),
             "inference": _inference(compiled.get((v.name, v.version))),
             "created_at": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v.created_at)),
             **({"problems": list(v.problems)} if v.problems else {})}
            for v in versions]
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no model versions yet: a completed `conveyor run` registers one")
        return 0
    from rich.table import Table

    table = Table(title="models", title_justify="left")
    for column in ("model", "version", "aliases", "gate", "metrics", "vs champion",
                   "inference", "run", "created"):
        table.add_column(column, overflow="fold")
    for row in rows:
        gate = str(row["decision"]) + ("" if row["decision"] == "passed"
                                       else ": " + "; ".join(row["reasons"]))
        if row.get("problems"):
            gate = f"[red]⚠ damaged record: {'; '.join(row['problems'])}[/]\n{gate}"
        table.add_row(row["name"], str(row["version"]), ", ".join(row["aliases"]), gate,
                      "  ".join(f"{k}={v:.4g}" for k, v in sorted(row["metrics"].items())),
                      "\n".join(comparison_lines(row["comparison"])),
                      _inference_cell(row["inference"]), row["run_id"], row["created_at"])
    console().print(table)
    return 0


def _inference(status: CompiledStatus | None) -> dict[str, Any] | None:
    """How the version is scored (`conveyor.compiled`); None before its first build."""
    return status.to_dict() if status is not None else None


def _inference_cell(inference: dict[str, Any] | None) -> str:
    from rich.markup import escape

    if inference is None:
        return "[dim]not built yet[/]"
    status = CompiledStatus.from_dict(inference)
    if status.compiled:
        return status.served_by
    reason = status.reason or ""
    return escape(f"python: {reason[:77] + '…' if len(reason) > 80 else reason}")


def _reasons(gate: dict[str, Any]) -> list[str]:
    reasons = gate.get("reasons", [])
    return [str(r) for r in reasons] if isinstance(reasons, list) else [str(reasons)]


def promote_model(args: argparse.Namespace, app: Session) -> int:
    previous = Registry(app.store()).promote(
        args.name, args.version, force=args.force,
        reason=args.reason or "promoted from the command line")
    result = {"name": args.name, "champion": args.version, "previous": previous}
    if args.json:
        print_json(result)
    else:
        print(f"{args.name}: champion is now version {args.version}"
              + (f" (was {previous})" if previous else ""))
    return 0


def rollback_model(args: argparse.Namespace, app: Session) -> int:
    registry = Registry(app.store())
    current, target = registry.rollback(args.name, reason=args.reason)
    if args.json:
        print_json({"name": args.name, "champion": target, "previous": current})
    else:
        print(f"{args.name}: champion rolled back from version {current} to {target}")
    return 0


def compile_model(args: argparse.Namespace, app: Session) -> int:
    from conveyor.compiled import compile_version

    record = Registry(app.store()).get(args.name, args.version)
    if args.rebuild:
        print(f"building {args.name} v{args.version}'s compiled form ...")
    status, _ = compile_version(app, record, rebuild=args.rebuild)
    if args.json:
        print_json(status.to_dict())
        return 0
    parity = status.parity
    figures = (f" (parity on {parity['rows']} test rows, max difference "
               f"{parity.get('max_abs_diff', 0):.2g}, tolerance {parity.get('tolerance')})"
               if parity.get("rows") else "")
    print(f"{args.name} v{args.version}: {status.short()}{figures}")
    return 0


def model_history(args: argparse.Namespace, app: Session) -> int:
    registry = Registry(app.store())
    rows = registry.history(args.name)
    records = {v.version: v for v in registry.versions(args.name)}
    for row in rows:
        row["at"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["at"]))
        record = records.get(row["version"])
        row["comparison"] = record.comparison(row["action"]) \
            if record and row["alias"] == CHAMPION else None
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        forced = " (forced)" if row["forced"] else ""
        print(f"{row['at']}  {row['alias']} -> v{row['version']} (was v{row['previous']})  "
              f"{row['action']}{forced} by {row['actor']}: {row['reason']}")
        for line in comparison_lines(row["comparison"]):
            print(f"    {line}")
    return 0
