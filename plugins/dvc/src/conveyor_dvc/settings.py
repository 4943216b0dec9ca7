"""The `dvc` config section (typed: unknown keys and wrong types stop a run before it starts)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import conveyor


@dataclass
class DvcConfig:
    # A DVC remote for `conveyor data push|pull` and `conveyor reproduce`: the name of a remote
    # in .dvc/config, a URL (s3://bucket/path, gs://..., azure://..., ssh://host/path) or a
    # folder (a path with a '/', relative to the project). null: the repository's default
    # remote (`conveyor init` makes 'local', the folder .conveyor/dvc-remote). Cloud URLs need
    # DVC's extra: pip install 'dvc[s3]' and so on.
    remote: str | None = None
    # Data files at least this large (MiB) are linked into DVC's cache instead of copied: a
    # reflink where the filesystem has them, else a read-only hardlink (edit such files by
    # writing a new file, or `dvc unprotect` them first). Smaller files are copied, so editing
    # them in place can never damage a cached version.
    link_min_mb: int = 64
    # How long a run waits for DVC's repository lock held by another dvc or conveyor process.
    lock_timeout: float = 300.0


SCHEMA = conveyor.ConfigSchema("dvc", DvcConfig, "DVC: remote, link size, lock timeout")


def settings_from(config: Any) -> DvcConfig:
    """The section from a resolved config mapping (defaults where absent)."""
    return SCHEMA.read(config)
