"""The Kedro baseline's pipeline: the same three nodes as figure 3 (load -> split -> train).

run.py copies this file over `src/kbench/pipeline_registry.py` of a project made with
`kedro new`, and workload.py next to it as `kbench/workload.py`. Every dataset is Kedro's default
in-memory dataset, so Kedro stores nothing: what `kedro run` costs beyond the plain script is
Kedro's own overhead.
"""

from __future__ import annotations

from typing import Any

from kbench import workload
from kedro.pipeline import Pipeline, node


def load(source: str) -> Any:
    return workload.load(source)


def split(frame: Any) -> tuple[Any, Any]:
    return workload.split(frame)


def train(frame: Any) -> Any:
    return workload.fit(frame, workload.logistic_regression())


def register_pipelines() -> dict[str, Pipeline]:
    pipeline = Pipeline([
        node(load, "params:source", "data", name="load"),
        node(split, "data", ["train_set", "test_set"], name="split"),
        node(train, "train_set", "model", name="train"),
    ])
    return {"__default__": pipeline}
