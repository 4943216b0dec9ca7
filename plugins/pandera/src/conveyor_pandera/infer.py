"""`conveyor schema infer DATA [-o schema.yaml]`: a Pandera schema to start from, inferred from
a CSV or Parquet file, written as Pandera YAML for a person to edit; and the schema that
`conveyor init` templates ship (through the `conveyor_after_init` hook)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import conveyor
from conveyor.tables import read_table  # the way `sklearn.load` reads: the same types

MAX_CATEGORIES = 20  # text columns with at most this many distinct values get an `isin`
SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")

HEADER = """\
# Pandera schema for {source}, inferred by `conveyor schema infer` from {rows:,} rows.
# Every column: dtype, nullable (may it have missing values?), checks such as ge, le, isin,
# unique. Rows that break it fail the validate stage (or are quarantined:
# validate.on_failure=quarantine); in monitoring they are set aside and counted, and a batch is
# invalid only when more than monitor.max_invalid_share of its rows break it.
{ranges}
# strict: true fails data with a column not listed here.
# coerce: true converts a column to its dtype, explicitly: numbers that arrived as text, or
# whole numbers read as floats because of a gap; a value that cannot be converted fails.
# Format: https://pandera.readthedocs.io/en/stable/dataframe_schemas.html
"""
EXPECTATIONS = """\
# The ranges (ge/le) and categories (isin) are what that file happened to contain, written as
# expectations (raise_warning: true): a value outside them is counted and reported (a warning
# in training, a data-quality figure in monitoring), never refused. To make one a hard check,
# delete its `raise_warning: true` (or infer with --strict)."""
HARD = """\
# The ranges (ge/le) and categories (isin) are what that file happened to contain, written as
# hard checks (--strict): a value outside them fails validation. Edit them; or write
# `ge: {{min_value: 0, raise_warning: true}}` for an expectation, counted but never refused."""


def infer_yaml(frame: Any, *, source: str, target: str | None = None,
               id_column: str | None = None, strict: bool = False,
               written_by: str = "conveyor schema infer") -> str:
    """The schema of `frame` as commented Pandera YAML (it loads with pandera.io).

    Observed ranges and categories are written as expectations (`raise_warning: true`: counted,
    never refused) unless `strict`, which writes them as hard checks. Types, nullability, the
    id column's uniqueness and the row count are hard checks either way. Its
    `metadata.conveyor` records the file it describes and what wrote it: Conveyor does not
    apply it to another data file that lacks its columns."""
    import yaml

    columns = {str(name): _column(frame[name], is_target=name == target,
                                  is_id=name == id_column, strict=strict)
               for name in frame.columns}
    body = {"schema_type": "dataframe", "api": "pandas", "columns": columns,
            "strict": True, "coerce": False,
            "checks": {"min_rows": int(min(len(frame), 100))},
            "metadata": {"conveyor": {"describes": source, "written_by": written_by}}}
    text = yaml.dump(body, Dumper=_dumper(), sort_keys=False, allow_unicode=True, width=100)
    text = text.replace("\nmetadata:\n", "\nmetadata:  # the data file this schema was written "
                                          "for: not applied to another file lacking its columns\n")
    if target in frame.columns:
        text = re.sub(rf"^  {re.escape(str(target))}:$",
                      f"  {target}:  # the target (data.target): every row needs a value",
                      text, count=1, flags=re.MULTILINE)
    text = text.replace("\nchecks:\n", "\nchecks:  # the frame as a whole\n")
    return HEADER.format(source=source, rows=len(frame),
                         ranges=(HARD if strict else EXPECTATIONS).format()) + text


def infer_contract(frame: Any, *, source: str | None, target: str | None = None,
                   id_column: str | None = None) -> str:
    """A schema of what a model trained on `frame` cannot score without, as Pandera YAML: each
    column present, numbers as numbers (whole numbers too: a missing value makes them floats),
    the id column unique and always there. The observed ranges and categories are only
    expectations (counted by monitoring, never refused), and any value may be missing: new
    data may differ there, and that is drift to measure, not a broken contract. Not strict:
    extra columns are ignored."""
    import pandas as pd
    import yaml

    columns: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        rules = _column(series, is_target=name == target, is_id=name == id_column, strict=False)
        rules.pop("dtype", None)
        rules["nullable"] = name != id_column
        if name != target and pd.api.types.is_numeric_dtype(series.dtype) and \
                not pd.api.types.is_bool_dtype(series.dtype):
            rules = {"dtype": "float64", **rules, "coerce": True}
        else:
            rules.pop("coerce", None)
        columns[str(name)] = rules
    body = {"schema_type": "dataframe", "api": "pandas", "columns": columns, "strict": False,
            "coerce": False, "metadata": {"conveyor": {"describes": source,
                                                       "written_by": "inferred by the run"}}}
    header = (f"# The contract inferred from {source or 'the training data'} ({len(frame):,} "
              "rows): the columns a model\n# trained on it needs and which are numbers (hard "
              "checks); the ranges and categories\n# it held are expectations, never refused.\n")
    return header + yaml.dump(body, Dumper=_dumper(), sort_keys=False, allow_unicode=True,
                              width=100)


def _column(series: Any, *, is_target: bool, is_id: bool, strict: bool) -> dict[str, Any]:
    import pandas as pd

    dtype = series.dtype
    nulls = bool(series.isna().any())
    rules: dict[str, Any] = {}
    untyped = pd.api.types.is_object_dtype(dtype)
    if isinstance(dtype, pd.StringDtype) or (untyped and _all_text(series)):
        rules["dtype"] = "str"
    elif isinstance(dtype, pd.CategoricalDtype):
        rules["dtype"] = "category"
    elif not untyped:
        rules["dtype"] = str(dtype)
    rules["nullable"] = nulls and not is_target
    numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    if numeric:
        rules["coerce"] = True
        present = series.dropna()
        # No range for an id: new customers get ids beyond the training data's, and every row
        # of a later batch counted "outside expectations" (or, with --strict, was refused).
        if len(present) and not is_id:
            rules["ge"] = _rule("min_value", _plain(present.min()), strict)
            rules["le"] = _rule("max_value", _plain(present.max()), strict)
    if is_id:
        rules["unique"] = True
    elif rules.get("dtype") in ("str", "category"):
        distinct = series.dropna().unique()
        if 0 < len(distinct) <= MAX_CATEGORIES and len(distinct) < max(2, len(series) // 2):
            rules["isin"] = _rule("allowed_values", sorted(str(v) for v in distinct), strict)
    return rules


def _rule(name: str, value: Any, strict: bool) -> Any:
    """A check's value: as is for a hard check, with `raise_warning: true` for an expectation."""
    return value if strict else _Flow({name: value, "raise_warning": True})


class _Flow(dict):
    """A mapping written on one line: `ge: {min_value: 0, raise_warning: true}`."""


def _dumper() -> Any:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(_Flow, lambda dumper, data: dumper.represent_mapping(
        "tag:yaml.org,2002:map", data.items(), flow_style=True))
    return Dumper


def _all_text(series: Any) -> bool:
    return all(isinstance(v, str) for v in series.dropna().head(1000))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


# --- the command ------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    subcommands = parser.add_subparsers(dest="schema_command", metavar="SUBCOMMAND")
    infer = subcommands.add_parser(
        "infer", help="infer a Pandera schema (YAML) from a CSV or Parquet file",
        description="Infer a Pandera schema from a data file: column types, nullability, "
                    "observed ranges, the categories of low-cardinality text columns. It is "
                    "written as Pandera YAML to edit, and validates the file it came from. "
                    "Types and nullability are hard checks; the observed ranges and categories "
                    "are expectations (raise_warning: true): a value outside them is counted "
                    "and reported, in training and in monitoring, but never refused. --strict "
                    "writes them as hard checks instead.")
    infer.add_argument("data", help="a .csv, .tsv or .parquet file")
    infer.add_argument("-o", "--output", help="write the schema here (default: print it)")
    infer.add_argument("--target", help="the target column: every row needs a value "
                                        "(default: data.target of the project, if any)")
    infer.add_argument("--id-column", help="a column of unique ids (default: data.id_column)")
    infer.add_argument("--strict", action="store_true",
                       help="write the observed ranges (ge/le) and categories (isin) as hard "
                            "checks that refuse other values, not as expectations that count "
                            "them")
    infer.add_argument("--force", action="store_true", help="overwrite an existing output file")


def run(args: argparse.Namespace, app: Any) -> int:
    if getattr(args, "schema_command", None) != "infer":
        raise conveyor.UsageError("say what to do with schemas: conveyor schema infer DATA "
                                  "[-o schema.yaml]", hint="see `conveyor schema infer --help`")
    path = app.directory / args.data
    if not path.is_file():
        raise conveyor.UsageError(f"data file not found: {path}")
    if path.suffix.lower() not in SUFFIXES:
        raise conveyor.UsageError(f"{args.data}: unsupported file type '{path.suffix}'",
                                  hint="use .csv, .tsv or .parquet")
    defaults = _project_data_section(app)
    try:
        frame = read_table(path)
    except Exception as exc:
        raise conveyor.UsageError(f"cannot read {args.data}: {type(exc).__name__}: {exc}") from exc
    text = infer_yaml(frame, source=_relative(path, app, args.data),
                      target=args.target or defaults.get("target"),
                      id_column=args.id_column or defaults.get("id_column"),
                      strict=args.strict)
    if not args.output:
        print(text, end="")
        return 0
    output = app.directory / args.output
    if output.exists() and not args.force:
        raise conveyor.UsageError(f"{output} already exists", hint="pass --force to overwrite it")
    output.write_text(text)
    print(f"wrote {output}: {frame.shape[1]} columns, from {len(frame):,} rows of {args.data}; "
          + ("ranges and categories as hard checks (--strict)" if args.strict else
             "ranges and categories as expectations (counted, not refused; --strict for hard "
             "checks)"))
    return 0


def _relative(path: Path, app: Any, given: str) -> str:
    """`path` as `data.source` would name it: relative to the project, when in one."""
    try:
        return path.resolve().relative_to(app.project_dir.resolve()).as_posix()
    except (conveyor.UsageError, ValueError):
        return given


def _project_data_section(app: Any) -> dict[str, Any]:
    """`data:` of the project's conveyor.yaml as written (not composed), when in a project."""
    try:
        return _data_section(app.project_dir / "conveyor.yaml")
    except conveyor.UsageError:
        return {}


def _data_section(config: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    section = data.get("data") if isinstance(data, dict) else None
    return section if isinstance(section, dict) else {}


SCHEMA = conveyor.CliCommand(
    "schema", "data schemas: infer a Pandera schema from a data file",
    configure=configure, run=run,
    description="Data schemas (conveyor-pandera). `conveyor schema infer DATA -o schema.yaml` "
                "writes a schema to start from; point data.schema at it.")


# --- conveyor init ----------------------------------------------------------------------------


def add_schema_to_project(project_dir: Path, name: str = "schema.yaml") -> bool:
    """Infer `schema.yaml` from the data of a new project and set `data.schema` to it."""
    config = project_dir / "conveyor.yaml"
    data = _data_section(config)
    source = data.get("source")
    if not isinstance(source, str) or data.get("schema") or \
            Path(source).suffix.lower() not in SUFFIXES or not (project_dir / source).is_file():
        return False
    frame = read_table(project_dir / source)
    # The template's schema is its sample data's contract: hard checks, as it always shipped.
    (project_dir / name).write_text(infer_yaml(frame, source=source, target=data.get("target"),
                                               id_column=data.get("id_column"), strict=True,
                                               written_by="conveyor init"))
    text = config.read_text()
    line = re.search(r"^(\s+)source:.*$", text, flags=re.MULTILINE)
    if line is None:
        return False
    indent = line.group(1)
    entry = f"{indent}schema: {name}".ljust(len(indent) + 40) + \
        "# Pandera schema; `conveyor schema infer` wrote it: edit it"
    config.write_text(text[:line.end()] + "\n" + entry + text[line.end():])
    return True
