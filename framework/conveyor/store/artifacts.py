"""Content-addressed artifacts: `<location>/<sha256[:2]>/<sha256><suffix>`, hash-checked on load.

Where they live is the setting `store.artifacts`:

- unset: the project's `.conveyor/artifacts/` folder; a path: that local folder (relative paths
  from the project). Every artifact is written to a temporary file in `.conveyor/tmp/`, hashed
  and renamed into place (`os.replace`), so a reader never sees a half-written file.
- an fsspec URL, e.g. `s3://bucket/prefix` (s3 through s3fs is the tested one; any installed
  fsspec protocol works the same way): the finished temporary file is hashed locally, then
  uploaded once under its content address unless an object of that key and size is already
  there. A single PUT or a completed multipart upload is what S3 makes visible, whole or not at
  all, so no rename is needed. Loading downloads into a local cache, `.conveyor/cache/artifacts/`
  (temporary file + rename), checks the sha256 and keeps the copy; a cached copy is reused while
  its size holds and is hashed once per process.

Credentials and endpoint for S3 come from where boto3 looks for them: the environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_PROFILE`,
`AWS_DEFAULT_REGION`, and `AWS_ENDPOINT_URL` for an S3-compatible server such as MinIO),
`~/.aws/credentials` and `~/.aws/config`, or an instance role; or from `storage_options`
(passed to the fsspec filesystem: `key`, `secret`, `endpoint_url`, `profile`, ...). Secrets are
never shown: messages print `location`, which has any user:password part masked, and errors
from the storage library have every known secret replaced by `***`.

A bad location (unknown protocol, missing bucket, no or wrong credentials, an unreachable
endpoint) is a `ConfigError` (exit 2) when the store opens, before any stage runs, naming
`store.artifacts` and where the value came from. Failures later (the server gone mid-run) are
a `StoreError` (exit 1): nothing is recorded for an artifact whose upload did not complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import ConfigError, StageFailed, StoreError

if TYPE_CHECKING:
    from conveyor.contributions import Codec
    from conveyor.store.db import Store

CHUNK = 1 << 20
STALE_TMP_SECONDS = 24 * 3600
SETTING = "store.artifacts"
PROGRESS_BYTES = 64 << 20  # moving an artifact this large to or from object storage is shown
# Environment variables and storage options whose values are secrets: masked in every message.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
SECRET_OPTIONS = ("secret", "token", "password", "aws_secret_access_key", "aws_session_token")


@dataclass(frozen=True)
class ArtifactRef:
    sha256: str
    codec: str
    suffix: str
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "codec": self.codec, "suffix": self.suffix, "size": self.size}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactRef:
        return cls(data["sha256"], data["codec"], data["suffix"], int(data["size"]))


def sha256_file(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB chunks: a file's content identity."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def codec_for(codecs: Sequence[Codec], value: Any, *, stage: str, output: str) -> Codec:
    """The codec that stores `value`, the output `output` of stage `stage`: the first of
    `codecs` (highest priority first, as `conveyor.Host.codecs` lists them) that handles it;
    `StageFailed` naming the output and its type when none does. The runner chooses so, and so
    does anything storing a stage's outputs elsewhere (a Ray task)."""
    codec = next((c for c in codecs if c.handles(value)), None)
    if codec is None:
        raise StageFailed(
            f"stage '{stage}' returned output '{output}' of type "
            f"{type(value).__module__}.{type(value).__name__}, which no installed codec can "
            "store", hint="return JSON-like values, or install a plugin with a codec")
    return codec


def masked_url(url: str) -> str:
    """`url` with any `user:password@` part shown as `user:***@`: safe for messages."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)


def is_remote(url: str | None) -> bool:
    """Whether `store.artifacts` names object storage (an fsspec URL other than file://)."""
    return bool(url) and "://" in str(url) and not str(url).startswith("file://")


class ArtifactStore:
    """The artifacts of a store: `put`/`adopt` to write, `exists`, `verify`/`local_path` for a
    checked local file, `load` to decode. `url` is `store.artifacts` (None: `root/artifacts`),
    `storage_options` go to the fsspec filesystem, `origin` says where `url` came from (for
    messages, e.g. "environment variable CONVEYOR_STORE_ARTIFACTS").

    `store` None is an artifact store without the database (a Ray task's, which never writes
    it): `put`/`adopt` then store the bytes without recording the artifact's row, which the
    process that records the stage does (`Store.record_artifact`)."""

    def __init__(self, root: Path, store: Store | None, url: str | None = None,
                 storage_options: dict[str, Any] | None = None, *,
                 origin: str = "the caller") -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.store = store
        self.origin = origin
        self._options = dict(storage_options or {})
        password = re.search(r"://[^/@:]*:([^/@]*)@", url or "")
        self._url_password = password.group(1) if password else ""
        self._verified: dict[Path, tuple[int, int]] = {}  # cache file: (size, mtime_ns) hashed ok
        # Objects seen in this process (key: size): a listing of many runs asks about the same
        # artifacts again and again, one round trip each. Content-addressed, so it cannot be
        # stale unless someone deletes an object; loading still checks the bytes.
        self._sizes: dict[str, int] = {}
        self.fs: Any = None
        if not url:
            self.dir = root / "artifacts"
            self.location = str(self.dir)
        elif not is_remote(url):
            folder = Path(url.removeprefix("file://")).expanduser()
            self.dir = folder if folder.is_absolute() else root.parent / folder
            self.location = str(self.dir)
        else:
            self.dir = root / "cache" / "artifacts"  # the local copies of remote objects
            self.location = masked_url(url.rstrip("/"))
            self._open_remote(url.rstrip("/"))

    # -- object storage ------------------------------------------------------------------------

    def _open_remote(self, url: str) -> None:
        """Make the filesystem and check the bucket answers, so a bad setting stops the command
        before any stage runs."""
        try:
            import fsspec
            from fsspec.core import split_protocol

            protocol, _ = split_protocol(url)
            cls = fsspec.get_filesystem_class(protocol)
        except (ImportError, ValueError) as exc:
            raise self._config_error(f"the protocol of {self.location} is not available: "
                                     f"{self._clean(exc)}",
                                     hint="use a local folder or s3://bucket/prefix; s3 needs "
                                          "the [s3] extra (pip install 'conveyor[s3]')") from None
        # A fresh instance: fsspec's instance cache would keep an endpoint or credentials that
        # the environment no longer has; listings are not cached because other machines write.
        options = {"skip_instance_cache": True, "use_listings_cache": False, **self._options}
        try:
            self.fs = cls(**options)
        except Exception as exc:  # a filesystem's own check of its options
            raise self._config_error(f"{self.location} cannot be opened: {self._clean(exc)}",
                                     hint="check storage_options") from None
        self.prefix = self.fs._strip_protocol(url).rstrip("/")
        bucket = self.prefix.split("/", 1)[0]
        try:
            self.fs.info(bucket)
        except FileNotFoundError:
            raise self._config_error(f"the bucket {bucket!r} of {self.location} does not exist",
                                     hint="create it, or point store.artifacts at an existing "
                                          "bucket") from None
        except PermissionError as exc:
            raise self._config_error(f"{self.location} refuses these credentials: "
                                     f"{self._clean(exc)}", hint=CREDENTIALS_HINT) from None
        except Exception as exc:
            problem = "has no credentials" if "Credentials" in type(exc).__name__ \
                else "cannot be reached"
            raise self._config_error(f"{self.location} {problem}: {self._describe(exc)}",
                                     hint=CREDENTIALS_HINT) from None

    def key(self, ref: ArtifactRef) -> str:
        """The object's path in the remote filesystem (no protocol)."""
        return f"{self.prefix}/{ref.sha256[:2]}/{ref.sha256}{ref.suffix}"

    def _remote_size(self, ref: ArtifactRef) -> int | None:
        key = self.key(ref)
        if key in self._sizes:
            return self._sizes[key]
        try:
            self._sizes[key] = int(self.fs.info(key)["size"])
            return self._sizes[key]
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._runtime_error(f"cannot look up artifact {ref.sha256[:12]}", exc) from None

    def _upload(self, tmp: Path, ref: ArtifactRef) -> None:
        if self._remote_size(ref) == ref.size:
            return  # content-addressed: the same bytes are already there
        try:
            # One put_object, or a multipart upload that is completed (made visible) only after
            # every part arrived and is aborted on error: a reader sees the whole object or none.
            with self._progress("uploading", ref):
                self.fs.put_file(str(tmp), self.key(ref))
        except Exception as exc:
            raise self._runtime_error(f"cannot upload artifact {ref.sha256[:12]}", exc) from None
        self._sizes[self.key(ref)] = ref.size

    def _download(self, ref: ArtifactRef) -> Path:
        cached = self.path(ref)
        if cached.is_file():
            stat = cached.stat()
            if stat.st_size == ref.size and (
                    self._verified.get(cached) == (stat.st_size, stat.st_mtime_ns)
                    or sha256_file(cached) == ref.sha256):
                self._verified[cached] = (stat.st_size, stat.st_mtime_ns)
                return cached
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, suffix=ref.suffix)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                with self._progress("downloading", ref):
                    self.fs.get_file(self.key(ref), str(tmp))
            except FileNotFoundError:
                self._sizes.pop(self.key(ref), None)
                raise StoreError(f"artifact {ref.sha256[:12]} is missing from {self.location}",
                                 hint="re-run the stage that produced it") from None
            except Exception as exc:
                raise self._runtime_error(f"cannot download artifact {ref.sha256[:12]}",
                                          exc) from None
            actual = sha256_file(tmp)
            if actual != ref.sha256:
                # The object's name is its content's hash, so an object that does not match is
                # wrong for everyone: removed, so the next run stores it again.
                self._remove_corrupt(ref)
                raise StoreError(
                    f"artifact {self.location}/{ref.sha256[:2]}/{ref.sha256}{ref.suffix} is "
                    f"corrupt or was tampered with: its sha256 is {actual[:12]}…, the store "
                    f"recorded {ref.sha256[:12]}…",
                    hint="it was removed; re-run the stage that produced it")
            cached.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, cached)
        finally:
            tmp.unlink(missing_ok=True)
        stat = cached.stat()
        self._verified[cached] = (stat.st_size, stat.st_mtime_ns)
        return cached

    @contextlib.contextmanager
    def _progress(self, doing: str, ref: ArtifactRef) -> Iterator[None]:
        """A line on stderr before and after moving a large artifact (it can take minutes)."""
        if ref.size < PROGRESS_BYTES:
            yield
            return
        megabytes = ref.size / 1e6
        print(f"  {doing} artifact {ref.sha256[:12]} ({megabytes:,.0f} MB), {self.location}…",
              file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        took = max(time.perf_counter() - start, 1e-6)
        print(f"  {doing} artifact {ref.sha256[:12]}: done in {took:.1f}s "
              f"({megabytes / took:,.0f} MB/s)", file=sys.stderr, flush=True)

    def _remove_corrupt(self, ref: ArtifactRef) -> None:
        self._sizes.pop(self.key(ref), None)
        # Best effort: the error about the corrupt object is the one to show.
        with contextlib.suppress(Exception):
            self.fs.rm_file(self.key(ref))

    def _secrets(self) -> list[str]:
        found = [os.environ.get(name, "") for name in SECRET_ENV]
        found += [str(value) for name, value in self._options.items() if name in SECRET_OPTIONS]
        found.append(self._url_password)
        return [secret for secret in found if secret]

    def _clean(self, exc: BaseException | str) -> str:
        text = str(exc)
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _describe(self, exc: BaseException) -> str:
        text = self._clean(exc) or "no details"
        return f"{type(exc).__name__}: {text}"

    def _config_error(self, message: str, *, hint: str) -> ConfigError:
        return ConfigError(f"{SETTING} (from {self.origin}): {message}", hint=hint)

    def _runtime_error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"{what} at {self.location}: {self._describe(exc)}",
                          hint="check that the object storage is reachable, then run again")

    # -- the API -------------------------------------------------------------------------------

    def path(self, ref: ArtifactRef) -> Path:
        """Where the artifact's file is (local store) or is cached (object storage); it may not
        exist or be checked yet: callers that need the file use `local_path`."""
        return self.dir / ref.sha256[:2] / f"{ref.sha256}{ref.suffix}"

    def put(self, obj: Any, codec: Codec) -> ArtifactRef:
        """Encode `obj` with `codec` and store it; its reference."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=self.tmp, suffix=codec.suffix)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            codec.dump(obj, tmp)
            return self.adopt(tmp, codec.name, codec.suffix)
        finally:
            tmp.unlink(missing_ok=True)

    def adopt(self, tmp: Path, codec: str, suffix: str) -> ArtifactRef:
        """Move a finished temporary file into the store under its content hash.

        The rename makes it visible whole or not at all, which is what a killed process needs.
        There is no fsync: after a power loss a file could be short, and the hash check on every
        load then refuses it, so the stage is recomputed rather than trusted. With object
        storage the file is uploaded instead (and removed by the caller)."""
        ref = ArtifactRef(sha256_file(tmp), codec, suffix, tmp.stat().st_size)
        if self.fs is not None:
            self._upload(tmp, ref)
        else:
            final = self.path(ref)
            # A file already under this name is reused only if it is whole: a truncated or
            # damaged one (the reason the stage re-ran) is replaced, or the store would never heal.
            if not (self.exists(ref) and sha256_file(final) == ref.sha256):
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
        # The artifact's row, recorded only once its bytes are stored.
        if self.store is not None:
            self.store.record_artifact(ref)
        return ref

    def exists(self, ref: ArtifactRef) -> bool:
        """Whether the artifact is stored with its recorded size (not hashed: `verify` does)."""
        if self.fs is not None:
            return self._remote_size(ref) == ref.size
        path = self.path(ref)
        return path.is_file() and path.stat().st_size == ref.size

    def verify(self, ref: ArtifactRef) -> Path:
        """A local file holding the artifact, its sha256 checked; `StoreError` if it is missing
        or corrupt. For object storage, a checked copy in `.conveyor/cache/artifacts/`."""
        if self.fs is not None:
            return self._download(ref)
        path = self.path(ref)
        if not path.is_file():
            raise StoreError(f"artifact {ref.sha256[:12]} is missing from {self.dir}",
                             hint=self._missing_hint())
        actual = sha256_file(path)
        if actual != ref.sha256:
            raise StoreError(
                f"artifact {path} is corrupt or was tampered with: its sha256 is {actual[:12]}…, "
                f"the store recorded {ref.sha256[:12]}…",
                hint="re-run the stage that produced it (delete the file to force that)")
        return path

    def _missing_hint(self) -> str:
        location = getattr(self.store, "location", None)
        if location is not None and location.url and location.artifacts is None:
            # A shared database whose artifacts stayed in each machine's own folder.
            return (f"the database ({location.shown_url}) is shared, but store.artifacts is "
                    f"unset, so artifacts stay in each machine's {self.dir}: set "
                    "store.artifacts (or CONVEYOR_STORE_ARTIFACTS) to storage every machine "
                    "reaches, e.g. s3://bucket/prefix, or re-run the stage that produced it here")
        return "re-run the stage that produced it"

    def local_path(self, ref: ArtifactRef) -> Path:
        """A checked local file of the artifact (as `verify`): for callers that need a path."""
        return self.verify(ref)

    def load(self, ref: ArtifactRef, codec: Codec) -> Any:
        """The artifact decoded by `codec`, after its hash check."""
        return codec.load(self.verify(ref))

    def sweep_tmp(self) -> None:
        """Remove temporary files left by killed processes (old enough not to be in use)."""
        if not self.tmp.is_dir():
            return
        cutoff = time.time() - STALE_TMP_SECONDS
        for leftover in self.tmp.iterdir():
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except OSError:
                pass


CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and "
                    "AWS_ENDPOINT_URL for an S3-compatible server")
