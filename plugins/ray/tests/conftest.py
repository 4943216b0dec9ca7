"""Fixtures for conveyor-ray's tests: one local Ray cluster per test session (per xdist
worker), started with `ray start --head` on 127.0.0.1 and stopped by process id, and a small
project whose stages come from a project-local plugin (fast: no model library)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conveyor.testing import Project
from conveyor_ray.testing import RayHead, ray_head

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

STAGES = '''
import os
import time

import conveyor


def _numbers(ctx):
    ctx.log(f"making {ctx.settings['count']} numbers")
    return {"numbers": list(range(ctx.settings["count"]))}


def _total(ctx):
    numbers = ctx.inputs["numbers"]
    print(f"summing {len(numbers)} numbers in process {os.getpid()}")
    time.sleep(float(ctx.settings.get("sleep", 0)))
    ctx.log_metrics({"total": sum(numbers) * ctx.settings["scale"], "threads": ctx.threads})
    return {"summary": {"total": sum(numbers) * ctx.settings["scale"], "pid": os.getpid()}}


def _boom(ctx):
    raise ValueError(f"the numbers are bad: {len(ctx.inputs['numbers'])} of them")


@conveyor.hookimpl
def conveyor_stage_types(register):
    register(conveyor.StageType("local.numbers", _numbers))
    register(conveyor.StageType("local.total", _total))
    register(conveyor.StageType("local.boom", _boom))
'''


def project_config(**ray: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "defaults": ["conveyor/defaults", "_self_"], "project": "sums",
        "plugins": {"local": ["sum_stages"]},
        "pipeline": {
            "numbers": {"uses": "local.numbers", "count": 10},
            "total": {"uses": "local.total", "needs": ["numbers"], "scale": 2, "sleep": 0},
        }}
    if ray:
        config["ray"] = ray
    return config


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayHead]:
    with ray_head(num_cpus=2) as head:
        yield head


@pytest.fixture
def sums_project(conveyor_project: Callable[..., Project]) -> Callable[..., Project]:
    def make(**ray: Any) -> Project:
        return conveyor_project(project_config(**ray), files={"sum_stages.py": STAGES})

    return make
