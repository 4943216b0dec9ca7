"""The compiled form of a conveyor-sklearn Pipeline: one ONNX graph run by onnxruntime.

`compile_pipeline` implements `conveyor_compile_model`: the whole Pipeline (preprocessing and
estimator) becomes one ONNX graph computing in double precision, as scikit-learn does, so the
core's parity gate (1e-5, `conveyor.compiled`) holds for the `model` options it converts. The
standard pipeline (`preprocess.build_preprocessor`, then a tree ensemble or a linear model) is
written by `onnx_graph` without importing skl2onnx (a second of CPU per process); any other is
converted by skl2onnx (`exporting.to_onnx(precision="double")`). A step skl2onnx has no
converter for raises `NotCompilable` naming it; the version is then served by Python.

`OnnxModel` is the `conveyor.compiled.CompiledModel`: one onnxruntime session built when it is
made (intra-op threads: `conveyor.compiled.inference_threads()`, sleeping rather than spinning
while they wait), fed one [N, 1] tensor per feature column straight from numpy (no pandas); a
classifier's labels are picked from its probabilities (`first_max`). Stored by the codec `ONNX`
("onnx", .onnx): the ONNX file itself, its features, kinds and classes in the model's metadata
(`conveyor.compiled`), so the file alone runs anywhere onnxruntime does.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import conveyor
from conveyor.compiled import CompiledArtifact, CompiledPrediction, NotCompilable

FORM = "onnx"
META_KEY = "conveyor.compiled"
# Probabilities this close are a tie (the graph sums in another order than scikit-learn).
TIE = 1e-9


class OnnxModel:
    """A conveyor-sklearn Pipeline compiled to ONNX, run by onnxruntime (thread-safe)."""

    form = FORM

    def __init__(self, onnx_bytes: bytes, *, threads: int | None = None) -> None:
        import onnxruntime as ort
        from conveyor.compiled import inference_threads

        self.onnx_bytes = onnx_bytes
        options = ort.SessionOptions()
        self.threads = threads or inference_threads()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Threads that wait for work sleep rather than spin: the count is the cores free when
        # the model was loaded, and a core taken later by another process made a spinning pool
        # twice as slow (100k rows, 2 threads on 2 loaded cores: 1.94 s spinning, 1.18 s not).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(onnx_bytes, options,
                                             providers=["CPUExecutionProvider"])
        meta = json.loads(self._session.get_modelmeta().custom_metadata_map[META_KEY])
        self.features: list[str] = list(meta["features"])
        self.kinds: dict[str, str] = dict(meta["kinds"])
        self.classes: list[Any] | None = meta.get("classes")
        self._inputs = [(i.name, i.type == "tensor(string)") for i in self._session.get_inputs()]
        # A classifier's `probabilities` (its labels are picked from them: `first_max`); a
        # regressor's only output.
        self._outputs = ["probabilities"] if self.classes is not None else \
            [self._session.get_outputs()[0].name]
        self._class_array = None if self.classes is None else _class_array(self.classes)

    def __repr__(self) -> str:
        return f"OnnxModel({len(self.features)} features, threads={self.threads})"

    def predict_columns(self, columns: Mapping[str, Any]) -> CompiledPrediction:
        import numpy as np

        feeds = {}
        for name, text in self._inputs:
            values = columns[name]
            if text:
                values = np.asarray(values, dtype=object)
                values = np.where(np.equal(values, None), "", values).astype(str)
            else:
                values = np.asarray(values, dtype=np.float64)
            feeds[name] = values.reshape(-1, 1)
        outputs = self._session.run(self._outputs, feeds)
        if self.classes is None:
            return CompiledPrediction(np.asarray(outputs[0], dtype=np.float64).ravel())
        probabilities = np.asarray(outputs[0], dtype=np.float64)
        return CompiledPrediction(self._class_array[first_max(probabilities)], probabilities)


def first_max(probabilities: Any) -> Any:
    """Per row, the first class whose probability is the highest, as scikit-learn's
    `classes_[argmax(predict_proba)]` picks it: probabilities within `TIE` of the highest count
    as equal, so a tie scikit-learn breaks towards the first class (a forest's 100 votes to
    100) is broken the same way when the graph's sum is rounded otherwise."""
    import numpy as np

    if probabilities.shape[1] == 0:
        return np.zeros(len(probabilities), dtype=np.intp)
    highest = probabilities.max(axis=1, keepdims=True)
    return np.argmax(probabilities >= highest - TIE, axis=1)


def _class_array(classes: list[Any]) -> Any:
    import numpy as np

    array = np.asarray(classes)
    return array if array.dtype.kind in "iufb" else np.asarray(classes, dtype=object)


def compile_pipeline(model: Any, features: list[str], kinds: Mapping[str, str]
                     ) -> CompiledArtifact | None:
    """The `conveyor_compile_model` of conveyor-sklearn (see the module docstring); None for a
    model that is not a Pipeline this plugin trained."""
    steps = dict(getattr(model, "steps", []))
    if not {"prepare", "preprocess", "model"} <= set(steps):
        return None
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise NotCompilable(f"{exc.name} is not installed (pip install "
                            "'conveyor-sklearn[onnx]')") from exc
    from sklearn.base import is_classifier

    from conveyor_sklearn import onnx_graph
    from conveyor_sklearn.exporting import feature_types

    types = feature_types(model)
    grouped = _infrequent_columns(steps["preprocess"])
    if grouped:
        raise NotCompilable(f"one-hot column(s) {', '.join(grouped)} group infrequent "
                            "categories, where an ONNX graph cannot send unseen ones")
    proto = onnx_graph.graph(model, types)  # the standard pipeline, without skl2onnx
    converters = converter_versions(skl2onnx=proto is None)
    if proto is None:
        proto = _with_skl2onnx(model)
    types = dict(types)
    meta = {"features": list(types), "kinds": {c: "text" if k == "string" else "number"
                                               for c, k in types.items()},
            "classes": [_plain(c) for c in steps["model"].classes_]
            if is_classifier(steps["model"]) else None}
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    return CompiledArtifact(OnnxModel(proto.SerializeToString()), codec=ONNX.name,
                            converters=converters)


def _with_skl2onnx(model: Any) -> Any:
    """Any other pipeline: skl2onnx converts it in double precision (tree ensembles it cannot
    write in double are added by `onnx_trees`)."""
    try:
        import skl2onnx  # noqa: F401
    except ImportError as exc:
        raise NotCompilable(f"{exc.name} is not installed (pip install "
                            "'conveyor-sklearn[onnx]')") from exc
    from sklearn.base import is_classifier

    from conveyor_sklearn import onnx_trees
    from conveyor_sklearn.exporting import to_onnx

    estimator = model.steps[-1][1]
    trees = onnx_trees.ensemble(estimator)  # written here, not by skl2onnx
    missing = unconvertible_steps(model, written=(estimator,) if trees else ())
    if missing:
        raise NotCompilable("no ONNX converter for " + ", ".join(missing))
    try:
        proto = to_onnx(model, description="compiled by Conveyor", precision="double",
                        estimator=trees is None)
    except conveyor.ConveyorError as exc:
        raise NotCompilable(exc.message) from exc
    if trees is not None:
        onnx_trees.append(proto, proto.graph.output[0].name, trees,
                          classifier=is_classifier(estimator))
    _unknown_categories_as_zeros(proto)
    return proto


def _infrequent_columns(preprocess: Any) -> list[str]:
    """Columns whose one-hot encoder groups infrequent categories (more than
    `preprocess.MAX_CATEGORIES`): scikit-learn sends an unseen value there, ONNX cannot."""
    found: list[str] = []
    for _name, transformer, columns in preprocess.transformers_:
        encoder = getattr(transformer, "named_steps", {}).get("encode")
        infrequent = getattr(encoder, "infrequent_categories_", None) or []
        found += [str(c) for c, group in zip(columns, infrequent, strict=False)
                  if group is not None]
    return found


def _unknown_categories_as_zeros(proto: Any) -> None:
    """A value the encoder never saw becomes all zeros, as scikit-learn's
    handle_unknown="infrequent_if_exist" does without infrequent categories (skl2onnx's
    graph fails the request instead)."""
    for node in proto.graph.node:
        if node.op_type == "OneHotEncoder":
            for attribute in node.attribute:
                if attribute.name == "zeros":
                    attribute.i = 1


def converter_versions(*, skl2onnx: bool = True) -> dict[str, str]:
    """The versions of what converts (onnx; skl2onnx when it did) and runs the graph."""
    from importlib.metadata import version

    packages = ("skl2onnx",) * skl2onnx + ("onnx", "onnxruntime", "scikit-learn")
    return {"runtime": "onnxruntime", **{p: version(p) for p in packages}}


def _plain(value: Any) -> Any:
    """A class label as a plain Python value (numpy scalars as int, float, bool, str)."""
    return value.item() if hasattr(value, "item") else value


def unconvertible_steps(pipeline: Any, *, written: tuple[Any, ...] = ()) -> list[str]:
    """The steps of a Pipeline (nested ones included) skl2onnx has no converter for, as
    "step 'name' (Type)", other than those `written` otherwise; the `prepare` step is the input
    contract, not in the graph."""
    from skl2onnx._supported_operators import sklearn_operator_name_map

    found: list[str] = []

    def walk(name: str, step: Any) -> None:
        if step in ("drop", "passthrough", None):
            return
        if hasattr(step, "steps"):
            for child, inner in step.steps:
                if (name, child) != ("", "prepare"):
                    walk(child, inner)
            return
        if hasattr(step, "transformers_"):
            for child, inner, _columns in step.transformers_:
                walk(child, inner)
            return
        if type(step) not in sklearn_operator_name_map and \
                not any(step is other for other in written):
            found.append(f"step '{name}' ({type(step).__name__})")

    walk("", pipeline)
    return found


def _dump(model: OnnxModel, path: Path) -> None:
    path.write_bytes(model.onnx_bytes)


def _load(path: Path) -> OnnxModel:
    return OnnxModel(path.read_bytes())


ONNX = conveyor.Codec(name="onnx", suffix=".onnx", handles=lambda obj: isinstance(obj, OnnxModel),
                      dump=_dump, load=_load, priority=10)
