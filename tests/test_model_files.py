"""A model file never runs code when it is loaded (issue 14, item 2).

A corpus of malicious skops files, crafted by writing their schema.json by hand, each with a
payload that creates a marker file: `builtins.exec`, `builtins.eval`, `os.system`, `subprocess`,
scikit-learn's and numpy's testing helpers that run Python source, alone or hidden inside a real
model. Loading refuses every one of them before anything in it is imported or constructed, and
the marker never appears, whether the codec is called directly or an attacker who can write the
store (file and hash) makes one the champion for `conveyor predict`. Loading trusts only the exact
types of conveyor_sklearn.codecs.TRUSTED_TYPES, and only those a model was saved with; the list
covers every model of the `model` config group.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import zipfile
from pathlib import Path

import pytest
from _support import assert_run_failed
from conveyor import api
from conveyor.errors import StoreError
from conveyor.store import ArtifactRef, open_store
from conveyor.testing import store_execute
from conveyor_sklearn import codecs

CONF = Path(codecs.__file__).parent / "conf" / "model"
RECORD = "conveyor/types.json"  # the types a model was saved with, inside its file


def _value(value):
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode",
            "content": json.dumps(value), "is_json": True}


def _list(items):
    return {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
            "content": [_value(i) for i in items]}


def _call(module, name, *args):
    """A node that skops turns into `module.name(*args)` when it constructs the object."""
    return {"__class__": name, "__module__": module, "__loader__": "ConstructorFromReduceNode",
            "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                        "content": [_list(a) if isinstance(a, list) else _value(a)
                                    for a in args]}}


def _touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


PAYLOADS = {
    "exec": lambda m: _call("builtins", "exec", _touch(m)),
    "eval": lambda m: _call("builtins", "eval", _touch(m)),
    "os_system": lambda m: _call("os", "system", f"touch '{m}'"),
    "posix_system": lambda m: _call("posix", "system", f"touch '{m}'"),
    "subprocess_call": lambda m: _call("subprocess", "call", ["touch", str(m)]),
    "subprocess_popen": lambda m: _call("subprocess", "Popen", ["touch", str(m)]),
    "sklearn_testing_helper": lambda m: _call(
        "sklearn.utils._testing", "assert_run_python_script_without_output", _touch(m)),
    "numpy_testing_measure": lambda m: _call("numpy.testing", "measure", _touch(m)),
    "numpy_testing_runstring": lambda m: {
        **_call("numpy.testing", "runstring", _touch(m), "x"),
        "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                    "content": [_value(_touch(m)),
                                {"__class__": "dict", "__module__": "builtins",
                                 "__loader__": "DictNode", "content": {},
                                 "key_types": _list([])}]}},
}


def _write(path: Path, schema: dict, record: dict | None = None, *,
           members_of: Path | None = None) -> Path:
    """A skops file with this schema (and record), and the data members of another file."""
    with zipfile.ZipFile(path, "w") as archive:
        if members_of is not None:
            with zipfile.ZipFile(members_of) as source:
                for name in source.namelist():
                    if name not in ("schema.json", RECORD):
                        archive.writestr(name, source.read(name))
        archive.writestr("schema.json", json.dumps({**schema, "protocol": 2,
                                                    "_skops_version": "0.16.0"}))
        if record is not None:
            archive.writestr(RECORD, json.dumps(record))
    return path


def _real_model():
    import numpy as np
    import pandas as pd
    from conveyor_sklearn.preprocess import build_pipeline
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"a": np.arange(40.0), "c": ["x", "y", None, "z"] * 10})
    return build_pipeline(frame, LogisticRegression()).fit(frame, [0, 1] * 20), frame


def _hidden_in_a_real_model(tmp_path: Path, payload: dict) -> Path:
    """A genuine pipeline saved by the codec, with the payload as its `memory` attribute."""
    model, _ = _real_model()
    genuine = tmp_path / "genuine.skops"
    codecs._dump_estimator(model, genuine)
    with zipfile.ZipFile(genuine) as archive:
        schema = json.loads(archive.read("schema.json"))
        record = json.loads(archive.read(RECORD)) if RECORD in archive.namelist() else None
    schema["content"]["content"]["memory"] = payload
    return _write(tmp_path / "hidden.skops", schema, record, members_of=genuine)


def _variants(tmp_path: Path, marker: Path, name: str) -> list[Path]:
    payload = PAYLOADS[name](marker)
    forged = {"types": sorted({f"{payload['__module__']}.{payload['__class__']}",
                               "builtins.tuple", "builtins.str", "builtins.list",
                               "builtins.dict"}), "functions": []}
    return [_write(tmp_path / "bare.skops", payload),
            _write(tmp_path / "forged_record.skops", payload, forged),
            _hidden_in_a_real_model(tmp_path, payload)]


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_malicious_model_file_never_runs_its_payload(tmp_path, name):
    marker = tmp_path / "pwned"
    for path in _variants(tmp_path, marker, name):
        refused = None
        try:
            codecs._load_estimator(path)
        except StoreError as exc:
            refused = exc
        assert not marker.exists(), f"{path.name}: the payload ran"
        assert refused is not None and "not trusted" in refused.message, refused
        assert PAYLOADS[name](marker)["__class__"] in refused.message


def test_the_corpus_does_run_its_payload_when_skops_trusts_it(tmp_path):
    # Control for the test above: these files are real attacks, not merely malformed.
    import skops.io

    for name in ("exec", "sklearn_testing_helper", "numpy_testing_measure", "subprocess_call"):
        marker = tmp_path / f"pwned-{name}"
        path = _write(tmp_path / f"{name}.skops", PAYLOADS[name](marker))
        with contextlib.suppress(Exception):  # the payload runs before anything fails
            skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
        if name == "subprocess_call":
            import time

            for _ in range(50):
                if marker.exists():
                    break
                time.sleep(0.1)
        assert marker.exists(), name


def test_function_and_method_nodes_outside_the_list_are_refused(tmp_path):
    model, _ = _real_model()
    path = tmp_path / "m.skops"
    codecs._dump_estimator(model, path)
    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
    # FunctionTransformer(func=...) is called on every prediction: os.system instead.
    steps = schema["content"]["content"]["steps"]["content"]
    transformer = steps[0]["content"][1]["content"]["content"]
    transformer["func"] = {"__class__": "system", "__module__": "os", "__loader__": "FunctionNode"}
    with pytest.raises(StoreError, match=r"os\.system \(a function\)"):
        codecs._load_estimator(_write(tmp_path / "f.skops", schema, members_of=path))


def test_a_type_the_model_was_not_saved_with_is_refused(tmp_path):
    model, frame = _real_model()
    path = tmp_path / "m.skops"
    codecs._dump_estimator(model, path)
    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
        record = json.loads(archive.read(RECORD))
    assert "sklearn.linear_model._logistic.LogisticRegression" in record["types"]
    assert record["functions"] == ["conveyor_sklearn.preprocess.as_model_input"]
    # Trusted by the framework, but not what this model was saved with.
    record["types"].remove("sklearn.linear_model._logistic.LogisticRegression")
    with pytest.raises(StoreError, match=r"not saved with: sklearn\.linear_model\._logistic"):
        codecs._load_estimator(_write(tmp_path / "altered.skops", schema, record,
                                       members_of=path))
    # Without a record (a file saved before records were kept) the framework's list decides.
    loaded = codecs._load_estimator(_write(tmp_path / "old.skops", schema, members_of=path))
    assert (loaded.predict(frame) == model.predict(frame)).all()


def test_trusted_types_are_exact_classes_and_builtins_only_plain_containers():
    import importlib

    plain = {"dict", "list", "tuple", "set", "frozenset", "slice", "str", "int", "float", "bool",
             "complex", "NoneType", "bytearray"}
    for name in codecs.TRUSTED_TYPES:
        module, _, attr = name.rpartition(".")
        if module == "builtins":
            assert attr in plain, name
            continue
        obj = importlib.import_module(module)
        assert inspect.isclass(getattr(obj, attr)), f"{name} is not a class"
    assert not any(t.endswith(".") for t in codecs.TRUSTED_TYPES)


def _fit_config_group_model(config: Path):
    import numpy as np
    import pandas as pd
    import yaml
    from conveyor.targets import TargetImporter
    from conveyor_sklearn.preprocess import build_pipeline

    spec = yaml.safe_load(config.read_text())
    estimator_class = TargetImporter(["sklearn", "lightgbm", "xgboost"])(spec["_target_"])
    params = {k: v for k, v in (spec.get("params") or {}).items()
              if not (isinstance(v, str) and v.startswith("${"))}
    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.integers(0, 5, n),
                          "c": rng.choice(["x", "y", None], n), "d": rng.choice([True, False], n)})
    frame.loc[::7, "a"] = np.nan
    from sklearn.base import is_regressor

    labels = [0, 1] if spec["_target_"].startswith("xgboost.") else ["no", "yes"]  # 0..n-1 only
    y = rng.normal(size=n) if is_regressor(estimator_class()) else rng.choice(labels, n)
    return build_pipeline(frame, estimator_class(**params)).fit(frame, y), frame


@pytest.mark.parametrize("config", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_of_the_config_group_saves_and_loads(tmp_path, config):
    model, frame = _fit_config_group_model(config)
    path = tmp_path / "m.skops"
    codecs._dump_estimator(model, path)
    loaded = codecs._load_estimator(path)
    assert (loaded.predict(frame) == model.predict(frame)).all()


@pytest.mark.parametrize("estimator", ["sklearn.ensemble.GradientBoostingClassifier",
                                       "sklearn.svm.SVC", "sklearn.linear_model.SGDClassifier",
                                       "sklearn.neural_network.MLPClassifier"])
def test_other_public_estimators_load_by_their_exact_names(tmp_path, estimator):
    import importlib
    import warnings

    import numpy as np
    import pandas as pd
    from conveyor_sklearn.preprocess import build_pipeline

    module, _, name = estimator.rpartition(".")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=80), "c": rng.choice(["x", "y", None], 80)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_pipeline(frame, getattr(importlib.import_module(module), name)()).fit(
            frame, rng.choice(["no", "yes"], 80))
    path = tmp_path / "m.skops"
    codecs._dump_estimator(model, path)
    assert (codecs._load_estimator(path).predict(frame) == model.predict(frame)).all()


# --- through the store and the real console script -------------------------------------------


@pytest.fixture
def trained(new_project):
    project = new_project("classification")
    project.run(check=True)
    return project


def _make_champion(project, malicious: Path) -> None:
    """What someone who can write the store does: the file and its hash, so the hash checks."""
    data = malicious.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    store = open_store(project.path)
    champion = api.resolve_model(project.path)
    ref = ArtifactRef(sha, "skops", ".skops", len(data))
    path = store.artifacts.path(ref)
    store.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    store_execute(project.path, "UPDATE model_versions SET artifact = :artifact WHERE "
                  "name = :name AND version = :version", artifact=json.dumps(ref.as_dict()),
                  name=champion.name, version=champion.version)


@pytest.mark.parametrize("name", ["exec", "sklearn_testing_helper"])
def test_predict_with_a_malicious_champion_never_runs_its_payload(trained, tmp_path, name):
    project = trained
    marker = tmp_path / "pwned"
    _make_champion(project, _hidden_in_a_real_model(tmp_path, PAYLOADS[name](marker)))
    result = project.cli("predict", "--data", "data/customers.csv")
    assert not marker.exists(), "the payload ran"
    assert_run_failed(result, "not trusted")
    with pytest.raises(StoreError, match="not trusted"):
        api.load_model(project.path)  # what `conveyor serve` and a Bento load through
    assert not marker.exists()
    assert not (project.path / "data" / "customers.predictions.parquet").exists()
