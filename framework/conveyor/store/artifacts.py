"""Content-addressed artifacts: `.conveyor/artifacts/<sha256[:2]>/<sha256><suffix>`.

Every artifact is written to a temporary file in `.conveyor/tmp/`, hashed, and renamed into
place, so a reader never sees a half-written file, and its sha256 is checked again on load.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.errors import StoreError

if TYPE_CHECKING:
    from conveyor.contributions import Codec
    from conveyor.store.db import Store

CHUNK = 1 << 20
STALE_TMP_SECONDS = 24 * 3600


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


class ArtifactStore:
    def __init__(self, root: Path, store: Store) -> None:
        self.dir = root / "artifacts"
        self.tmp = root / "tmp"
        self.store = store

    def path(self, ref: ArtifactRef) -> Path:
        return self.dir / ref.sha256[:2] / f"{ref.sha256}{ref.suffix}"

    def put(self, obj: Any, codec: Codec) -> ArtifactRef:
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
        load then refuses it, so the stage is recomputed rather than trusted."""
        ref = ArtifactRef(sha256_file(tmp), codec, suffix, tmp.stat().st_size)
        final = self.path(ref)
        # A file already under this name is reused only if it is whole: a truncated or damaged
        # one (the reason the stage re-ran) is replaced, or the store would never heal.
        if not (self.exists(ref) and sha256_file(final) == ref.sha256):
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
        self.store.record_artifact(ref)
        return ref

    def exists(self, ref: ArtifactRef) -> bool:
        path = self.path(ref)
        return path.is_file() and path.stat().st_size == ref.size

    def verify(self, ref: ArtifactRef) -> Path:
        path = self.path(ref)
        if not path.is_file():
            raise StoreError(f"artifact {ref.sha256[:12]} is missing from {self.dir}")
        actual = sha256_file(path)
        if actual != ref.sha256:
            raise StoreError(
                f"artifact {path} is corrupt or was tampered with: its sha256 is {actual[:12]}…, "
                f"the store recorded {ref.sha256[:12]}…",
                hint="re-run the stage that produced it (delete the file to force that)")
        return path

    def load(self, ref: ArtifactRef, codec: Codec) -> Any:
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
