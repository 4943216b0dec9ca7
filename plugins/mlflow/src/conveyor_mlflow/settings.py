"""The `mlflow` config section: where the mirror goes and what it sends.

`SCHEMA` types it and `check`s it on every command (a bad `mlflow.tracking_uri` is a
`conveyor.ConfigError`, exit 2, naming the key and where it was set, the URI shown without
its password); `settings_from(config)` reads it from a resolved config; `shown_uri(uri)`
is the URI as messages may print it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import conveyor

SCHEMES = ("http", "https")


@dataclass
class MlflowConfig:
    # The MLflow tracking server to mirror to (http:// or https://). Unset: the plugin does
    # nothing. From the environment: ${oc.env:MLFLOW_TRACKING_URI,null}.
    tracking_uri: str | None = None
    # The MLflow experiment the runs go to (null: the project's name); made if missing.
    experiment: str | None = None
    # false: keep the settings but mirror nothing (`conveyor mlflow sync` still works).
    enabled: bool = True
    # Seconds for each request to the server, and how many times a failed one is retried: a
    # server that is down costs a run about timeout x (retries + 1) at most, then a warning.
    timeout: float = 10.0
    retries: int = 1
    # Stored artifacts larger than this (MB) are not uploaded; the MLflow run lists them in
    # its `conveyor.skipped_artifacts` tag.
    max_artifact_mb: float = 200.0
    # After each run, the newest this many runs of the project are compared with MLflow and
    # whatever is missing is mirrored (`conveyor mlflow sync` compares them all).
    catch_up: int = 20


def shown_uri(uri: str) -> str:
    """`uri` with any password replaced by `***` (user names are kept: they say which
    account)."""
    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return "(an unparseable URI)" if "@" in uri else uri


def check(settings: MlflowConfig, where: Callable[[str], str]) -> None:
    """`ConfigSchema.check` of the section: ConfigError (exit 2) naming the key and where it
    was set (`where(key)`), on every command, before anything runs."""
    uri = settings.tracking_uri
    if uri is not None:
        problem = _uri_problem(uri)
        if problem:
            raise conveyor.ConfigError(
                f"config key 'mlflow.tracking_uri'{where('mlflow.tracking_uri')}: "
                f"{shown_uri(uri)!r} {problem}",
                hint="the address of an MLflow tracking server, e.g. "
                     "mlflow.tracking_uri=http://mlflow.example.com:5000")
    for name, value in (("timeout", settings.timeout), ("max_artifact_mb", settings.max_artifact_mb)):
        if not value > 0:
            raise conveyor.ConfigError(
                f"config key 'mlflow.{name}'{where('mlflow.' + name)}: {value:g} must be a "
                "positive number")
    for name, count in (("retries", settings.retries), ("catch_up", settings.catch_up)):
        if count < 0:
            raise conveyor.ConfigError(
                f"config key 'mlflow.{name}'{where('mlflow.' + name)}: {count} must be 0 or more")
    if settings.experiment is not None and not settings.experiment.strip():
        raise conveyor.ConfigError(f"config key 'mlflow.experiment'{where('mlflow.experiment')} "
                                   "is empty",
                                   hint="an MLflow experiment name, or null for the project's name")


SCHEMA = conveyor.ConfigSchema("mlflow", MlflowConfig,
                               "the MLflow tracking server runs and model versions are mirrored to",
                               check=check)


def settings_from(config: Mapping[str, Any] | None) -> MlflowConfig:
    """The `mlflow` section of a resolved config, defaults where absent, checked."""
    settings = SCHEMA.read(config)
    check(settings, lambda key: "")
    return settings


def _uri_problem(uri: str) -> str | None:
    try:
        parts = urlsplit(uri.strip())
        port = parts.port  # raises on a port that is not a number
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if parts.scheme not in SCHEMES:
        shown = f"'{parts.scheme}'" if parts.scheme else "none"
        return (f"is not an http(s) URL (scheme {shown}): the mirror talks to an MLflow "
                "tracking server")
    if not parts.hostname:
        return "has no host"
    if port == 0:
        return "has port 0"
    return None
