"""The `ray` config section: where the cluster is and which stages run on it, with what.

```yaml
ray:
  address: auto          # auto | local | HOST:PORT | ray://HOST:PORT
  stages:
    train: {num_cpus: 2, memory: 2147483648}
```

Why a section of its own rather than a key under `pipeline.<stage>`: where a stage runs does
not change what it produces, so it must not change the stage's fingerprint (its settings are
part of it, and a result computed on Ray is reused by a local run and back); and the core's
reserved stage keys (`uses`, `needs`, `threads`) stay the core's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor import ConfigError

AUTO = "auto"
LOCAL = "local"


@dataclass
class RayStageConfig:
    """The Ray resources of one stage's task (`ray.remote` options)."""

    num_cpus: float = 1.0  # also the stage's native threads (StageContext.threads)
    num_gpus: float = 0.0
    memory: int | None = None  # bytes the task reserves on its node; None: no reservation


@dataclass
class RayConfig:
    # auto: the cluster in RAY_ADDRESS, else the one `ray start` runs on this machine (exit 2
    # naming ray.address if there is none); local: a Ray started inside the command for its
    # duration; else a cluster's address, HOST:PORT or ray://HOST:PORT (Ray Client).
    address: str = AUTO
    stages: dict[str, RayStageConfig] = field(default_factory=dict)
    # Environment variables of `conveyor run` its stages' tasks get too (Ray's runtime_env),
    # e.g. the AWS_* credentials of `store.artifacts: s3://...` when the workers lack them.
    # Names only: the values are read when the run starts and never recorded.
    forward_env: list[str] = field(default_factory=list)


def ray_config(config: Mapping[str, Any]) -> RayConfig:
    """The `ray` section of a run's resolved config, typed (the schema checked it already)."""
    section = config.get("ray") or {}
    stages = {name: RayStageConfig(**(dict(spec) if spec else {}))
              for name, spec in (section.get("stages") or {}).items()}
    return RayConfig(address=str(section.get("address") or AUTO), stages=stages,
                     forward_env=[str(n) for n in section.get("forward_env") or []])


def check_stages(settings: RayConfig, pipeline: Mapping[str, Any]) -> None:
    """Every stage named under `ray.stages` is a stage of the pipeline, its resources sane."""
    for name, resources in settings.stages.items():
        if name not in pipeline:
            raise ConfigError(f"ray.stages.{name}: the pipeline has no stage '{name}'",
                              hint=f"stages: {', '.join(pipeline) or 'none'}")
        for key in ("num_cpus", "num_gpus"):
            if getattr(resources, key) < 0:
                raise ConfigError(f"ray.stages.{name}.{key} must be 0 or more, not "
                                  f"{getattr(resources, key)}")
        if resources.memory is not None and resources.memory <= 0:
            raise ConfigError(f"ray.stages.{name}.memory must be a number of bytes above 0, "
                              f"not {resources.memory}")


def address_origin(overrides: tuple[str, ...]) -> str:
    """Where `ray.address` came from, for messages."""
    if any(o.lstrip("+").startswith("ray.address=") for o in overrides):
        return "the command line"
    return "conveyor.yaml (or its default, auto)"


def resolved_address(address: str) -> str:
    """`auto` with RAY_ADDRESS set is that address; otherwise the setting as written."""
    if address.strip().lower() == AUTO and os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    return address.strip()
