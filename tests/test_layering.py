"""The store's layering (issue 15): no SQL outside `conveyor.store`, except in a plugin's own
records module, the one holding the tables it registers with `conveyor_store_tables`. Commands,
the runner, the cache, the API and the UI read and write through the repositories, so the store
can gain another backend without touching them."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

from conveyor.plugins import PluginHost
from conveyor.store import TableSet

REPO = Path(__file__).resolve().parents[1]
STORE = REPO / "framework" / "conveyor" / "store"

# Statement-like SQL in a string literal (keywords in capitals, as the code base writes SQL):
# prose such as "select a model" or "update the alias" does not match.
SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+(OR\s+[A-Z]+\s+)?INTO\b|\bUPDATE\s+\w+\s+SET\b"
    r"|\bDELETE\s+FROM\b|\bREPLACE\s+INTO\b|\b(CREATE|DROP)\s+(TEMP\s+)?(TABLE|(UNIQUE\s+)?INDEX"
    r"|VIEW|TRIGGER)\b|\bALTER\s+TABLE\b|\bPRAGMA\s+\w+|\bBEGIN\s+(IMMEDIATE|EXCLUSIVE)\b")

# Files that hold SQL of a database that is not Conveyor's store, with the reason.
FOREIGN_DATABASES = {
    # DVC's own state database (its md5 cache of files), read, never written.
    "plugins/dvc/src/conveyor_dvc/state.py",
}


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal, f-strings as their literal parts joined."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str)
                           else " x " for v in node.values)
            found.append((node.lineno, text))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.value))
    return found


def _sources() -> list[Path]:
    files = list((REPO / "framework").rglob("*.py"))
    for src in (REPO / "plugins").glob("*/src"):
        files += src.rglob("*.py")
    return sorted(files)


def _records_modules() -> set[Path]:
    """The files defining a table set some installed plugin registers with
    `conveyor_store_tables`."""
    registered = PluginHost().load().contributions.store_tables
    files = set()
    for table_set in registered:
        for module in list(sys.modules.values()):
            file = getattr(module, "__file__", None)
            if file and any(value is table_set for value in vars(module).values()):
                files.add(Path(file).resolve())
    return files


def test_the_sql_check_finds_statements_not_prose():
    assert SQL.search("SELECT id FROM runs WHERE id=?")
    assert SQL.search("INSERT OR REPLACE INTO stages VALUES (?)")
    assert SQL.search("UPDATE stages SET status='x'") and SQL.search("PRAGMA data_version")
    assert SQL.search("CREATE TABLE IF NOT EXISTS t (a)") and SQL.search("ALTER TABLE t ADD b")
    assert not SQL.search("select the champion, then update the alias from the registry")
    assert not SQL.search("Record and read monitored batches; DELETE nothing")


def test_every_store_table_set_lives_in_a_records_module():
    records = _records_modules()
    names = {path.relative_to(REPO).as_posix() for path in records}
    assert {"plugins/monitor/src/conveyor_monitor/records.py",
            "plugins/retrain/src/conveyor_retrain/records.py"} <= names
    assert all(isinstance(t, TableSet) for t in PluginHost().load().contributions.store_tables)


def test_no_sql_outside_the_store_and_the_plugins_records_modules():
    allowed = _records_modules() | {REPO / path for path in FOREIGN_DATABASES}
    offenders = []
    for path in _sources():
        if path.resolve().is_relative_to(STORE) or path.resolve() in allowed:
            continue
        for line, text in _strings(ast.parse(path.read_text(), str(path))):
            if SQL.search(text):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {text.strip()[:60]!r}")
    assert offenders == [], "SQL outside conveyor.store (use a repository):\n" + \
        "\n".join(offenders)
