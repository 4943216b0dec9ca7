"""Where a project's store lives: `store.url` (the database) and `store.artifacts` (the files).

    from conveyor.store.location import resolve

    where = resolve(project_dir)            # StoreLocation(url, url_origin, artifacts, ...)
    print(where.shown_url)                  # the URL with any password replaced by ***

Both settings are resolved with this precedence: the command line (`store.url=...`, handed
over by the CLI through `set_command_line`) > the environment (`CONVEYOR_STORE_URL`,
`CONVEYOR_STORE_ARTIFACTS`) > the project's conveyor.yaml (`store:` block) > the default.
`store.url` None means SQLite at `<project>/.conveyor/store.db`; anything else is an SQLAlchemy
URL, e.g. `postgresql+psycopg://user@host:5432/db` (the password may be in the URL, come from
`${oc.env:VAR}` in conveyor.yaml, or from libpq's PGPASSWORD / ~/.pgpass). `store.artifacts`
None means `<project>/.conveyor/artifacts`; else a local folder or an fsspec URL
(`s3://bucket/prefix`). Reading conveyor.yaml here is cheap (no Hydra): `open_store` is called
by commands that never compose a config. So the store settings are read from conveyor.yaml's
top-level `store:` block only, where `${oc.env:VAR}` / `${oc.env:VAR,default}` may supply parts
(an unset VAR without a default is an error, as in OmegaConf); any other interpolation is
refused, and a `store:` set in a config group or an experiment file is NOT used: put the team's
store in conveyor.yaml, the environment or on the command line.

Every problem with a URL raises `StoreConfigError` (exit 2) naming the setting and where it
came from, with the password masked; credentials are never printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError

URL_ENV = "CONVEYOR_STORE_URL"
ARTIFACTS_ENV = "CONVEYOR_STORE_ARTIFACTS"
HEARTBEAT_ENV = "CONVEYOR_STORE_HEARTBEAT_SECONDS"
DEFAULT_HEARTBEAT_SECONDS = 10.0
DEFAULT_ORIGIN = "the default"
_command_line: dict[str, str] = {}


class StoreConfigError(ConfigError):
    """`store.url` or `store.artifacts` is unusable (unparseable, unknown driver, unreachable
    server, wrong credentials, missing database or bucket): exit 2, nothing ran. The message
    names the setting and where it came from; a password is shown as ***."""


@dataclass(frozen=True)
class StoreLocation:
    """The resolved store settings: `url` None for the project's SQLite file, `artifacts` None
    for the project's artifact folder; each `*_origin` says where the value came from
    ("the command line", "environment variable CONVEYOR_STORE_URL", "<path>/conveyor.yaml",
    "the default")."""

    url: str | None
    url_origin: str
    artifacts: str | None
    artifacts_origin: str
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS

    @property
    def shown_url(self) -> str:
        """`url` for messages: the password replaced by ***."""
        return mask_url(self.url) if self.url else "(the project's SQLite store)"


def set_command_line(overrides: Sequence[str]) -> None:
    """Remember `store.url=` / `store.artifacts=` among a command's overrides, so every store
    this process opens without an explicit URL uses them (the CLI calls it, once per command:
    what an earlier command in the same process said is forgotten)."""
    _command_line.clear()
    for override in overrides:
        key, sep, value = override.lstrip("+").partition("=")
        if sep and key in ("store.url", "store.artifacts", "store.heartbeat_seconds"):
            _command_line[key] = value.strip().strip("'\"")


def resolve(project_dir: Path | None, *, url: str | None = None,
            artifacts: str | None = None, url_origin: str = "the caller",
            artifacts_origin: str = "the caller") -> StoreLocation:
    """The store settings for `project_dir` (see the module docstring for the precedence);
    `url` / `artifacts` given by the caller win. `store.heartbeat_seconds` comes the same way
    (environment variable CONVEYOR_STORE_HEARTBEAT_SECONDS)."""
    config_path = project_dir / "conveyor.yaml" if project_dir is not None else None
    read: dict[str, Any] | None = None

    def from_file(key: str) -> Any:
        """`store.KEY` as conveyor.yaml states it: the file is read once, and only when the
        command line and the environment leave a setting to it."""
        nonlocal read
        if read is None:
            read = _file_settings(config_path) if config_path is not None else {}
        return read.get(key)

    found: list[tuple[str, str]] = []
    for key, given, given_origin, env in (("url", url, url_origin, URL_ENV),
                                          ("artifacts", artifacts, artifacts_origin,
                                           ARTIFACTS_ENV)):
        if given is not None:
            found.append((given, given_origin))
        elif f"store.{key}" in _command_line:
            found.append((_command_line[f"store.{key}"], "the command line"))
        elif os.environ.get(env):
            found.append((os.environ[env], f"environment variable {env}"))
        else:
            value = _interpolate_env(from_file(key), f"store.{key}", str(config_path))
            found.append((value, str(config_path)) if value else (None, DEFAULT_ORIGIN))
    (url_value, url_from), (art_value, art_from) = found
    if "store.heartbeat_seconds" in _command_line:
        beat: Any = _command_line["store.heartbeat_seconds"]
        beat_from = "the command line"
    elif os.environ.get(HEARTBEAT_ENV):
        beat, beat_from = os.environ[HEARTBEAT_ENV], f"environment variable {HEARTBEAT_ENV}"
    else:
        beat_from = str(config_path)
        beat = _interpolate_env(from_file("heartbeat_seconds"), "store.heartbeat_seconds",
                                beat_from)
    return StoreLocation(_blank_none(url_value), url_from, _blank_none(art_value), art_from,
                         _seconds(beat, beat_from))


def _seconds(value: Any, origin: str) -> float:
    if value is None:
        return DEFAULT_HEARTBEAT_SECONDS
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not seconds > 0:
        raise ConfigError(f"store.heartbeat_seconds must be a number of seconds > 0, not "
                          f"{value!r} (from {origin})")
    return seconds


def _blank_none(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
        return None
    return str(value)


def _file_settings(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}  # composition reports a broken conveyor.yaml properly
    section = data.get("store") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        return {}
    return {k: v for k, v in section.items() if k in ("url", "artifacts", "heartbeat_seconds")}


_ENV_REF = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)(?:,([^}]*))?\}")


def _interpolate_env(value: Any, setting: str, origin: str) -> Any:
    """`${oc.env:VAR}` / `${oc.env:VAR,default}` resolved as OmegaConf would: an unset VAR
    without a default is an error (not an empty value, which would quietly mean the project's
    SQLite store). Other interpolations (`${other.key}`) are refused: this reading of
    conveyor.yaml is not a composition, and a value it cannot see must not be guessed."""
    if not isinstance(value, str):
        return value

    def variable(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is None:
            raise StoreConfigError(
                f"{setting} (from {origin}) uses ${{oc.env:{name}}}, but environment variable "
                f"{name} is not set",
                hint=f"set {name}, or give a default: ${{oc.env:{name},...}}")
        return default.strip().strip("'\"")

    resolved = _ENV_REF.sub(variable, value)
    if "${" in resolved:
        raise StoreConfigError(
            f"{setting} (from {origin}) uses an interpolation other than ${{oc.env:VAR}}",
            hint=f"{setting} is read from conveyor.yaml's top-level store: block before any "
                 "config is composed: write the value there (${oc.env:VAR} may supply parts "
                 "of it), set CONVEYOR_STORE_URL / CONVEYOR_STORE_ARTIFACTS, or pass it on the "
                 "command line")
    return resolved


def mask_url(url: str) -> str:
    """`url` with its password replaced by *** (an unparseable one is cut at its host)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError, TypeError):
        return re.sub(r"//[^@/]*@", "//***@", url)


def as_environment(location: StoreLocation) -> dict[str, str]:
    """`location` as the environment variables `resolve` reads (CONVEYOR_STORE_URL,
    CONVEYOR_STORE_ARTIFACTS, CONVEYOR_STORE_HEARTBEAT_SECONDS), for a child process that must
    open the same store as this one (e.g. `conveyor serve`'s workers): a default is "null",
    which overrules the parent's variable and the child's conveyor.yaml alike. The URL may
    hold a password: hand these to a child's environment only, never print or write them."""
    return {URL_ENV: location.url or "null", ARTIFACTS_ENV: location.artifacts or "null",
            HEARTBEAT_ENV: repr(location.heartbeat_seconds)}
