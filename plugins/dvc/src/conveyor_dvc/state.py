"""DVC's hash cache (its "state"), read without importing DVC.

DVC 3 remembers the md5 of every file it hashed in a small SQLite database (a `diskcache`
Cache in `<site cache dir>/repo/<token>/hashes/local/cache.db`), keyed by the file's path and
checked against a token of its (inode, mtime, size). A cached `conveyor run` looks each data
file up there: an unchanged file is never read again, whatever its size, and DVC itself (about
0.3 s of imports) is not loaded at all.

Where that database is depends on DVC's configuration, the user and the repository's birth time,
so it is not guessed: whenever this plugin opens the repository with DVC's own API it writes the
location DVC computed to `.dvc/tmp/conveyor-state.json` (DVC's scratch folder, ignored by git).
Reading is safe even if that pointer is stale: an entry is used only if its token matches the
file's current metadata, exactly as DVC checks it. Writing always goes through DVC's API.

Only the standard library and nothing of DVC is imported here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from pathlib import Path

POINTER = Path(".dvc") / "tmp" / "conveyor-state.json"
HASH_VERSION = 1  # dvc_data.hashfile.state.State.HASH_VERSION (entries of newer versions are skipped)


def is_dvc_repo(project_dir: Path) -> bool:
    return (project_dir / ".dvc").is_dir()


def relative(path: Path, project_dir: Path) -> str | None:
    """`path` relative to the project (posix), or None when it is outside it."""
    try:
        return Path(path).resolve().relative_to(Path(project_dir).resolve()).as_posix()
    except ValueError:
        return None


def checksum(st: os.stat_result) -> str:
    """DVC's token of a file's metadata: `dvc_data.hashfile.state._checksum` of the info dict
    fsspec builds from the same `os.stat` (md5 of the repr of `([ino, mtime, size],)`)."""
    text = str(([st.st_ino, st.st_mtime, st.st_size],))
    return str(int(hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(), 16))


def write_pointer(project_dir: Path, *, root_dir: str, state_db: str, cache_dir: str,
                  dvc_version: str) -> None:
    target = project_dir / POINTER
    target.parent.mkdir(parents=True, exist_ok=True)
    body = {"root_dir": root_dir, "state_db": state_db, "cache_dir": cache_dir,
            "dvc": dvc_version}
    if read_pointer(project_dir) == body:
        return
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(target)


def read_pointer(project_dir: Path) -> dict | None:
    """The pointer, if it was written for this very folder (a copied or moved project's
    pointer names the original's database, which knows none of its paths)."""
    try:
        body = json.loads((project_dir / POINTER).read_text())
        if os.path.realpath(body["root_dir"]) != os.path.realpath(project_dir):
            return None
        return body
    except (OSError, ValueError, KeyError, TypeError):
        return None


def lookup(project_dir: Path, path: Path) -> str | None:
    """The md5 DVC recorded for `path` if the file is unchanged since (same inode, mtime and
    size), else None."""
    pointer = read_pointer(project_dir)
    rel = relative(path, project_dir)
    if pointer is None or rel is None or not os.path.isfile(pointer["state_db"]):
        return None
    key = os.path.join(pointer["root_dir"], *rel.split("/"))
    try:
        st = os.stat(path)
        conn = sqlite3.connect(pointer["state_db"], timeout=10)
        try:
            row = conn.execute("SELECT value FROM Cache WHERE key = ? AND raw = 1",
                               (key,)).fetchone()
        finally:
            conn.close()
    except (OSError, sqlite3.Error):
        return None
    return _md5_of(row[0] if row else None, st)


def _md5_of(raw: object, st: os.stat_result) -> str | None:
    if not isinstance(raw, str):
        return None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        entry = json.loads(raw)
        version = entry.get("version")
        # Entries without a version are DVC 2's, whose "md5" was md5-dos2unix: not ours.
        if version is None or version > HASH_VERSION or entry.get("checksum") != checksum(st):
            return None
        value = entry["hash_info"].get("md5")
        if isinstance(value, str) and len(value) == 32 and not value.endswith(".dir"):
            return value
    return None


def tracked_md5(project_dir: Path, rel: str) -> str | None:
    """The md5 that `REL.dvc` records for the file (DVC's version of it), if any."""
    dvcfile = project_dir / f"{rel}.dvc"
    try:
        text = dvcfile.read_text()
    except OSError:
        return None
    import yaml

    try:
        outs = (yaml.safe_load(text) or {}).get("outs") or []
    except yaml.YAMLError:
        return None
    for out in outs:
        if isinstance(out, dict) and out.get("path") == Path(rel).name and out.get("md5"):
            return str(out["md5"])
    return None


def cache_object(project_dir: Path, md5: str) -> Path:
    """Where DVC 3 keeps a version in the project's local cache (`cache.dir` as DVC last
    reported it, else the default .dvc/cache)."""
    pointer = read_pointer(project_dir) or {}
    cache_dir = pointer.get("cache_dir") or str(project_dir / ".dvc" / "cache" / "files" / "md5")
    return Path(cache_dir) / md5[:2] / md5[2:]
