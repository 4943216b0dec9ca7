"""`conveyor monitor` scores with the version's compiled form (conveyor.compiled) when it has
one: the same outputs as the Python model's (test_monitor.py's verdicts run on it too)."""

from __future__ import annotations

import numpy as np
from conveyor import api
from conveyor_monitor.check import PREDICTION, PROBA, predictions
from monitor_support import customers


def test_compiled_outputs_equal_the_python_models(shop):
    loaded = api.load_model(shop.path, "shop", compiled=True)
    assert loaded.compiled is not None, loaded.compiled_status
    frame = customers(2000, 5)[list(loaded.compiled.features)]
    python = predictions(loaded.model, frame)
    compiled = predictions(loaded.model, frame, loaded.compiled)
    assert set(compiled) == set(python) == {PREDICTION, f"{PROBA}1"}
    assert compiled[PREDICTION].tolist() == python[PREDICTION].tolist()
    assert np.abs(compiled[f"{PROBA}1"].to_numpy() - python[f"{PROBA}1"].to_numpy()).max() < 1e-5

