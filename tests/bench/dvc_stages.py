"""The DVC baseline's three stage commands (figure 2): `python dvc_stages.py load|split|train`.

run.py copies this file and workload.py into a fresh git + DVC repository whose dvc.yaml calls
it; DVC runs it once to fill its cache, and the benchmark times the `dvc repro` that follows,
with nothing to do.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import workload

WORK = Path("work")


def main(stage: str) -> None:
    import pandas as pd

    WORK.mkdir(exist_ok=True)
    if stage == "load":
        workload.load("data/bench.csv").to_parquet(WORK / "data.parquet", index=False)
    elif stage == "split":
        train, test = workload.split(pd.read_parquet(WORK / "data.parquet"))
        train.to_parquet(WORK / "train.parquet", index=False)
        test.to_parquet(WORK / "test.parquet", index=False)
    elif stage == "train":
        model = workload.fit(pd.read_parquet(WORK / "train.parquet"), workload.logistic_regression())
        with open(WORK / "model.pkl", "wb") as handle:
            pickle.dump(model, handle)
    else:
        raise SystemExit(f"unknown stage {stage}")


if __name__ == "__main__":
    main(sys.argv[1])
