"""`conveyor store copy --to URL`: a project's whole store copied into a new, empty one (the
first thing a team does when it outgrows one machine: the laptop's SQLite history moved to the
shared PostgreSQL). The copying itself is `conveyor.store.copy`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from conveyor.cli.app import print_json
from conveyor.session import Session

COPY_DESCRIPTION = """\
Copy every row of the project's store (runs, stages, params, metrics, artifact records, data
inputs, model versions, contracts, aliases and their history, the plugins' tables) into a new,
EMPTY store at URL, in one transaction on it: a failed copy leaves it without rows. The source
is read in one snapshot, so runs written meanwhile are wholly in the copy or not at all. A
destination that already holds rows is refused (exit 2) and left as it is.

The source is the project's store as resolved for every command (store.url on the command
line > CONVEYOR_STORE_URL > conveyor.yaml > .conveyor/store.db), or --from URL. Passwords:
put them in PGPASSWORD or ~/.pgpass rather than in the URL (they are never printed: shown
as ***).

Artifact files (the models and other stage outputs) are content-addressed files under
store.artifacts and are NOT copied unless --artifacts-to is given: keep store.artifacts
pointing at the same folder and the copy finds them; to move them to object storage or a
shared folder, give --artifacts-to s3://BUCKET/PREFIX (or a folder): each file is hash-checked
and copied there (ones already there are skipped).

Then point the project at the new store (conveyor.yaml `store: {url: ...}` or
CONVEYOR_STORE_URL) and check it: `conveyor runs list`, `conveyor models list`.

examples:
  createdb -h db.internal -U ml conveyor
  conveyor store copy --to postgresql+psycopg://ml@db.internal:5432/conveyor
  conveyor store copy --to postgresql+psycopg://ml@db.internal/conveyor \\
      --artifacts-to s3://ml-artifacts/shop
  conveyor store copy --from postgresql+psycopg://ml@db.internal/conveyor \\
      --to sqlite:///backup/store.db"""


def configure(commands: Any) -> None:
    store = commands.add_parser("store", help="the project store: copy it to another database",
                                description="The project's store (store.url, store.artifacts).")
    sub = store.add_subparsers(dest="store_command", metavar="ACTION")
    copy = sub.add_parser("copy", help="copy the whole store into a new, empty store (e.g. "
                                       "SQLite to a team's PostgreSQL)",
                          description=COPY_DESCRIPTION,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    copy.add_argument("--to", required=True, metavar="URL", dest="to_url",
                      help="the destination database, an SQLAlchemy URL: "
                           "postgresql+psycopg://USER@HOST:5432/DB or sqlite:///PATH")
    copy.add_argument("--from", metavar="URL", dest="from_url",
                      help="the source database (default: the project's store)")
    copy.add_argument("--artifacts-to", metavar="DEST",
                      help="also copy the artifact files to DEST: a folder or s3://BUCKET/PREFIX "
                           "(default: not copied; they stay under store.artifacts)")
    copy.add_argument("--json", action="store_true", help="the summary as JSON")
    copy.set_defaults(handler=copy_command)


def copy_command(args: argparse.Namespace, app: Session) -> int:
    from conveyor.store.copy import copy_artifacts, copy_into, open_destination

    tables = app.host.contributions.store_tables
    if args.from_url:
        source = open_destination(args.from_url, app.project_dir / ".conveyor", tables,
                                  origin="--from")
    else:
        source = app.store()
    try:
        dest = open_destination(args.to_url, source.root, tables, origin="--to")
        try:
            _say(f"copying {source.shown_url} to {dest.shown_url}")
            summary = copy_into(source, dest, progress=_progress)
            artifacts = None
            if args.artifacts_to:
                from conveyor.store.artifacts import ArtifactStore

                target = ArtifactStore(source.root, dest, url=args.artifacts_to,
                                       origin="--artifacts-to")
                _say(f"copying artifact files from {source.artifacts.location} to "
                     f"{target.location}")
                copied = copy_artifacts(source, target, progress=_artifact_progress)
                artifacts = {"to": target.location, "copied": copied}
        finally:
            dest.close()
    finally:
        source.close()
    if args.json:
        print_json({"source": summary.source, "dest": summary.dest, "rows": summary.rows,
                    "total": summary.total, "revision": summary.revision,
                    "created": summary.created, "artifacts": artifacts})
        return 0
    print(f"copied {summary.total} rows from {summary.source} to {summary.dest} "
          f"(schema revision {summary.revision}):")
    for name, count in summary.rows.items():
        print(f"  {name:<24} {count:>8}")
    if artifacts is not None:
        print(f"copied {artifacts['copied']} artifact files to {artifacts['to']}")
    else:
        print("artifact files were not copied (they stay under store.artifacts; "
              "--artifacts-to DEST copies them)")
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _progress(table: str, copied: int, total: int) -> None:
    if copied == total or copied % 50_000 == 0:
        _say(f"  {table}: {copied} rows" + ("" if copied == total else f" of {total}"))


def _artifact_progress(done: int, total: int) -> None:
    if done == total or done % 50 == 0:
        _say(f"  artifact files: {done}/{total}")
