"""The project's DVC repository, through DVC's own Python API, in-process.

DVC is imported inside functions only: a cached run never gets here (see `state`). When a data
file is new or changed, its md5 is computed once, while DVC is imported on a background thread,
and saved in DVC's state, so that `repo.add` finds it there and only links the file into the
cache. Nothing is ever hashed twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import conveyor

from conveyor_dvc import state
from conveyor_dvc.settings import DvcConfig

MiB = 2**20
SKIP_DIRS = (".dvc", ".conveyor", ".git")  # not data: DVC's cache, Conveyor's store, git
# Modules `repo.add` imports on first use: warmed on the background thread with DVC itself.
_WARM = ("dvc.repo", "dvc.repo.add", "dvc.output", "dvc.stage", "dvc.dvcfile",
         "dvc_data.hashfile.hash_info", "dvc_data.hashfile.transfer", "dvc_data.hashfile.build")


def not_a_dvc_repo(project_dir: Path) -> conveyor.UsageError:
    return conveyor.UsageError(
        f"{project_dir} is not a DVC repository (it has no .dvc folder), so its data has no "
        "versions to show, push, pull or restore",
        hint="make it one: `dvc init` in the project folder (`dvc init --no-scm` where there is "
             "no git); `conveyor init` does this for new projects")


def warm_imports() -> None:
    import importlib

    for name in _WARM:
        importlib.import_module(name)


@contextlib.contextmanager
def quiet_dvc() -> Iterator[list[logging.LogRecord]]:
    """DVC's own log lines ("To track the changes with git...", progress) are not shown;
    warnings are collected for Conveyor to put in its own words."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    collect = Collect(logging.WARNING)
    saved = []
    for name in ("dvc", "dvc_objects", "dvc_data"):  # the loggers `import dvc` sets up
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        logger.handlers = [collect]
        logger.propagate = False
    try:
        yield records
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate


def first_error(records: list[logging.LogRecord]) -> str | None:
    """DVC's first error message among collected log records ("failed to transfer 'x' - Cannot
    connect to host ..."), as one line."""
    for record in records:
        if record.levelno >= logging.ERROR:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                text += f" - {record.exc_info[1]}"
            return " ".join(text.split())
    return None


def md5_file(path: Path) -> tuple[str, os.stat_result]:
    """The file's md5 (DVC 3's `md5` hash: of the bytes as they are), with the metadata it had
    while being read. A file changing during the read is read again; one that keeps changing
    is an error."""
    buffer = bytearray(8 * MiB)  # large reads: few GIL hand-overs with the opener thread
    view = memoryview(buffer)
    for _ in range(3):
        before = os.stat(path)
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb", buffering=0) as handle:
            while size := handle.readinto(buffer):
                digest.update(view[:size])
        after = os.stat(path)
        if _same(before, after):
            return digest.hexdigest(), after
    raise conveyor.StageFailed(f"data file {path} keeps changing while it is read",
                               hint="run again once whatever writes it has finished")


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_ino, b.st_size, b.st_mtime_ns)


@dataclass(frozen=True)
class RemoteInfo:
    name: str
    url: str
    local_path: str | None  # for a folder remote

    def describe(self) -> str:
        return f"remote '{self.name}' ({self.url})"


class DvcProject:
    """One project's DVC repository for the length of a command or a run."""

    def __init__(self, project_dir: Path, *, remote: str | None = None,
                 lock_timeout: float = DvcConfig.lock_timeout) -> None:
        self.root = Path(project_dir).resolve()
        self.remote_spec = remote
        self.lock_timeout = lock_timeout
        self._repo: Any = None
        self._opener: threading.Thread | None = None
        self._open_error: BaseException | None = None
        self._reflink: bool | None = None
        self.warnings: list[str] = []
        self.last_error: str | None = None  # DVC's own reason for the last failed transfer

    # --- opening -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Import DVC and open the repository on a background thread, so that both overlap
        with hashing (md5 and file reads release the GIL)."""
        if self._opener is not None or self._repo is not None:
            return

        def work() -> None:
            try:
                warm_imports()
                self._open()
                self.reflinks()
            except BaseException as exc:  # reported when the repository is needed
                self._open_error = exc

        self._opener = threading.Thread(target=work, name="conveyor-dvc-open", daemon=True)
        self._opener.start()

    def repo(self) -> Any:
        """DVC's Repo for the project (opened once)."""
        if self._opener is not None:
            self._opener.join()
            self._opener = None
        if self._open_error is not None:
            error, self._open_error = self._open_error, None
            raise error
        return self._open()

    def _open(self) -> Any:
        if self._repo is not None:
            return self._repo
        if not state.is_dvc_repo(self.root):
            raise not_a_dvc_repo(self.root)
        import dvc
        from dvc.repo import Repo

        with quiet_dvc():
            repo = Repo(str(self.root), **(self._remote_override() or {}))
        hashes = getattr(repo.state, "hashes", None)
        if hashes is not None and getattr(hashes, "directory", None):
            with contextlib.suppress(OSError):
                state.write_pointer(self.root, root_dir=repo.root_dir,
                                    state_db=os.path.join(hashes.directory, "cache.db"),
                                    cache_dir=str(repo.cache.local.path),
                                    dvc_version=dvc.__version__)
        self._repo = repo
        return repo

    @contextlib.contextmanager
    def linking(self, size: int, link_min_bytes: int) -> Iterator[Any]:
        """The repository, with the cache type for a file of `size` bytes for the length of
        the block (see `_cache_types`)."""
        repo = self.repo()
        types = self._cache_types(size, link_min_bytes)
        odb = repo.cache.local
        if types is None or not hasattr(odb, "cache_types"):
            yield repo
            return
        before = odb.cache_types
        odb.cache_types = list(types)
        try:
            yield repo
        finally:
            odb.cache_types = before

    def _remote_override(self) -> dict[str, Any] | None:
        spec = self.remote_spec
        if not spec:
            return None
        if "://" not in spec and "/" not in spec and not spec.startswith("."):
            return {"remote": spec}  # a remote named in .dvc/config
        url = spec
        if "://" not in spec:  # a folder, relative to the project
            url = str((self.root / spec).resolve())
        return {"remote": "conveyor", "remote_config": {"url": url}}

    def close(self) -> None:
        if self._opener is not None:
            self._opener.join()
            self._opener = None
        if self._repo is not None:
            with contextlib.suppress(Exception):
                self._repo.close()
            self._repo = None

    # --- versions of data files ---------------------------------------------------------

    def hash_and_record(self, path: Path) -> str:
        """The md5 of a new or changed file, computed once and saved in DVC's state."""
        self.prepare()
        digest, st = md5_file(path)
        repo = self.repo()
        from dvc_data.hashfile.hash_info import HashInfo

        key = os.path.join(repo.root_dir, *state.relative(path, self.root).split("/"))
        info = repo.fs.info(key)
        if (info.get("ino"), info.get("size"), info.get("mtime")) == (
                st.st_ino, st.st_size, st.st_mtime):
            with quiet_dvc():
                repo.state.save(key, repo.fs, HashInfo("md5", digest), info)
        return digest

    def track(self, rel: str, expected: str, *, link_min_bytes: int) -> None:
        """Version `rel` with DVC (its `.dvc` file, its content in DVC's cache), checking that
        DVC versioned the very content the run recorded (`expected`, an md5)."""
        path = self.root / rel
        previous = state.tracked_md5(self.root, rel)
        from dvc.exceptions import DvcException

        try:
            with self.linking(_size(path), link_min_bytes) as repo:
                if previous and previous != expected:
                    self._drop_if_damaged(repo, rel, previous)
                self._locked(lambda: repo.add([str(path)]), what=f"version {rel}")
        except DvcException as exc:
            if type(exc).__name__ == "OutputAlreadyTrackedError":
                raise conveyor.StageFailed(
                    f"data file {rel} is committed to git, so DVC cannot version it",
                    hint=f"hand it over to DVC: git rm --cached {rel} && git commit -m "
                         f"'{rel}: versioned by DVC', then run again") from exc
            raise conveyor.StageFailed(f"DVC could not version data file {rel}: "
                                       f"{_dvc_message(exc)}") from exc
        now = state.tracked_md5(self.root, rel)
        if now != expected:
            raise conveyor.StageFailed(
                f"data file {rel} changed while the run was starting: the run recorded version "
                f"md5:{expected[:12]}, and the file DVC versioned a moment later is "
                f"md5:{(now or '?')[:12]}", hint="run again once the file is no longer being "
                                                 "written; the next run records the new version")

    def _cache_types(self, size: int, link_min_bytes: int) -> tuple[str, ...] | None:
        """How DVC links the workspace file to its cache; the user's `cache.type`, if set, is
        used as it is. Otherwise "copy": DVC still puts the file in its cache with a reflink
        where the filesystem has them (else a copy), and leaves the workspace file alone (with
        its default "reflink,copy" DVC deletes the file and copies it back, writing it twice and
        making it vanish for a moment under a concurrent reader). Large files get a hardlink
        where there are no reflinks, because copying 1 GiB costs as much as hashing it;
        hardlinked files are read-only (DVC protects them)."""
        if self.repo().config["cache"].get("type"):
            return None
        if size < link_min_bytes or self.reflinks():
            return ("copy",)
        return ("hardlink", "copy")

    def reflinks(self) -> bool:
        if self._reflink is None:
            from dvc_objects.fs.system import reflink

            tmp = self.root / ".dvc" / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            source, target = tmp / f"reflink-probe-{os.getpid()}", tmp / f"reflink-{os.getpid()}"
            try:
                source.write_bytes(b"probe")
                reflink(str(source), str(target))
                self._reflink = True
            except OSError:
                self._reflink = False
            finally:
                source.unlink(missing_ok=True)
                target.unlink(missing_ok=True)
        return self._reflink

    def _drop_if_damaged(self, repo: Any, rel: str, previous: str) -> None:
        """A hardlinked file edited in place changes DVC's cached copy too (the same inode):
        that cached version is gone. Remove the object, which no longer holds what its name
        says, so nothing is ever restored from it, and say so."""
        obj = Path(repo.cache.local.oid_to_path(previous))
        try:
            damaged = obj.stat().st_ino == (self.root / rel).stat().st_ino
        except OSError:
            return
        if not damaged:
            return
        obj.unlink(missing_ok=True)
        message = (f"{rel} was edited in place while hard-linked to DVC's cache, which changed "
                   f"the cached copy of its previous version md5:{previous[:12]} too: that "
                   "version is no longer in the local cache (a remote that received it with "
                   "`conveyor data push` still has it). Write large data files as new files, or "
                   f"`dvc unprotect {rel}` before editing")
        self.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr, flush=True)

    def _locked(self, action: Any, *, what: str) -> Any:
        """Run a DVC operation that takes DVC's repository lock, waiting while another dvc or
        conveyor process holds it (DVC itself gives up after 3 s)."""
        from dvc.lock import LockError

        started = time.monotonic()
        deadline = started + self.lock_timeout
        said = False
        while True:
            try:
                with quiet_dvc():
                    return action()
            except LockError as exc:
                if time.monotonic() >= deadline:
                    raise conveyor.StageFailed(
                        f"could not {what}: DVC's lock on {self.root} stayed taken for "
                        f"{time.monotonic() - started:.0f}s (dvc.lock_timeout: "
                        f"{self.lock_timeout:g}s)", hint="another dvc or conveyor process is "
                        "using the repository; if none is, a killed one left .dvc/tmp/lock "
                        "behind: remove it") from exc
                if not said:
                    print(f"waiting for DVC's lock on {self.root.name} (another dvc or conveyor "
                          "process is using the repository)", file=sys.stderr, flush=True)
                    said = True
                time.sleep(0.2)

    # --- remotes and the cache ---------------------------------------------------------

    def remote(self) -> RemoteInfo:
        repo = self.repo()
        from dvc.config import NoRemoteError

        try:
            remote = repo.cloud.get_remote(None)
        except NoRemoteError as exc:
            raise conveyor.UsageError(
                f"the DVC repository in {self.root} has no default remote",
                hint="add one: `dvc remote add -d NAME URL`, or set dvc.remote in "
                     "conveyor.yaml") from exc
        except ImportError as exc:  # DVC: "s3 is supported, but requires 'dvc-s3' ..."
            raise conveyor.UsageError(f"DVC remote {self.remote_spec or ''}: {exc}".strip(),
                                      hint=_extra_hint(str(exc))) from exc
        except Exception as exc:
            raise conveyor.UsageError(f"DVC remote: {_dvc_message(exc)}") from exc
        url = remote.fs.unstrip_protocol(remote.path)
        local = remote.path if remote.fs.protocol == "local" else None
        return RemoteInfo(remote.name, url, local)

    def in_cache(self, md5: str) -> bool:
        return os.path.isfile(self.repo().cache.local.oid_to_path(md5))

    def cache_path(self, md5: str) -> Path:
        return Path(self.repo().cache.local.oid_to_path(md5))

    def push(self, md5s: Iterable[str]) -> tuple[set[str], set[str]]:
        return self._transfer("push", md5s)

    def fetch(self, md5s: Iterable[str]) -> tuple[set[str], set[str]]:
        """Fetch versions from the remote into the local cache (the workspace is untouched)."""
        return self._transfer("pull", md5s)

    def _transfer(self, direction: str, md5s: Iterable[str]) -> tuple[set[str], set[str]]:
        from dvc_data.hashfile.hash_info import HashInfo

        info = self.remote()
        wanted = sorted(set(md5s))
        if not wanted:
            return set(), set()
        objects = [HashInfo("md5", m) for m in wanted]
        call = self.repo().cloud.push if direction == "push" else self.repo().cloud.pull
        try:
            with quiet_dvc() as records:
                result = call(objects)
            self.last_error = first_error(records)
        except ImportError as exc:
            raise conveyor.UsageError(f"{info.describe()}: {exc}", hint=_extra_hint(str(exc))
                                      ) from exc
        except Exception as exc:
            raise conveyor.ConveyorError(
                f"{direction} with {info.describe()} failed: {_dvc_message(exc)}",
                hint="check that the remote is reachable and that you may write to it") from exc
        done = {h.value for h in result.transferred}
        failed = {h.value for h in result.failed}
        return done, failed

    def remote_status(self, md5s: Iterable[str]) -> dict[str, str]:
        """For each version: "both" (cache and remote), "local" (not pushed), "remote" (only
        on the remote) or "missing" (neither), as DVC's cloud status sees it."""
        from dvc_data.hashfile.hash_info import HashInfo

        info = self.remote()
        wanted = sorted(set(md5s))
        if not wanted:
            return {}
        try:
            with quiet_dvc():
                result = self.repo().cloud.status([HashInfo("md5", m) for m in wanted])
        except ImportError as exc:
            raise conveyor.UsageError(f"{info.describe()}: {exc}", hint=_extra_hint(str(exc))
                                      ) from exc
        except Exception as exc:
            raise conveyor.ConveyorError(f"status of {info.describe()} failed: "
                                         f"{_dvc_message(exc)}") from exc
        where = {}
        for label, found in (("both", result.ok), ("local", result.new),
                             ("remote", result.deleted), ("missing", result.missing)):
            for hash_info in found:
                where[hash_info.value] = label
        return where

    def checkout(self, rels: list[str], link_min_bytes: int) -> None:
        """Put the current `.dvc` versions of these files back in the workspace."""
        for rel in rels:
            md5 = state.tracked_md5(self.root, rel)
            size = self.cache_path(md5).stat().st_size if md5 and self.in_cache(md5) else 0
            with self.linking(size, link_min_bytes) as repo:
                self._locked(lambda r=repo, t=rel: r.checkout(
                    targets=[str(self.root / f"{t}.dvc")]), what=f"restore {rel}")


def _size(path: Path) -> int:
    """A file's size; another process's DVC may be re-linking it this very moment."""
    for _ in range(20):
        try:
            return path.stat().st_size
        except FileNotFoundError:
            time.sleep(0.05)
    return path.stat().st_size


def tracked_files(project_dir: Path) -> list[str]:
    """The data files the project's `.dvc` files version (relative, posix), skipping DVC's and
    Conveyor's own folders."""
    found = []
    for folder, dirs, files in os.walk(project_dir):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not (here == project_dir and d in SKIP_DIRS)
                         and d not in (".git", "__pycache__"))
        for name in sorted(files):
            if name.endswith(".dvc"):
                target = (here / name).relative_to(project_dir).as_posix()[: -len(".dvc")]
                if state.tracked_md5(project_dir, target):
                    found.append(target)
    return found


def _dvc_message(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _extra_hint(text: str) -> str | None:
    for extra in ("s3", "gs", "azure", "ssh", "gdrive", "hdfs", "oss", "webdav"):
        if f"dvc-{extra}" in text or f"'{extra}'" in text:
            return f"pip install 'dvc[{extra}]' (DVC's remote extra), or conveyor-dvc[{extra}]"
    return None
