"""`conveyor export --format onnx`: a registered model pipeline as one ONNX graph (skl2onnx).

The graph includes the preprocessing the training stage built (`preprocess.build_pipeline`):
median imputation and scaling of numbers, constant imputation and one-hot encoding of text,
then the estimator. Its inputs are one tensor per feature column, shape [N, 1]: numbers as
double (NaN for a missing value), text as string ("" for a missing value). The `prepare` step
of the Pipeline (dtype conversion of a DataFrame) is that input contract, so it is not in the
graph. Preprocessing runs in double precision, as in scikit-learn, and the result is cast to
float32 for the estimator, whose ONNX operators compute in float32 (skl2onnx adjusts tree
thresholds for that cast); see the tests for the tolerance this achieves.

skl2onnx and onnxruntime are optional: `pip install 'conveyor-sklearn[onnx]'`.
"""

from __future__ import annotations

import argparse
import copy
import os
from typing import Any

import conveyor

EXTRA_HINT = "install the extra: pip install 'conveyor-sklearn[onnx]' (skl2onnx, onnxruntime)"
FORMATS = ("onnx",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = """\
examples:
  conveyor export --format onnx                         # the champion -> NAME-vVERSION.onnx
  conveyor export --format onnx -o model.onnx --model churn:3

The ONNX model takes one input per feature column, shape [N, 1]: numbers as double (NaN when
missing), text as string ("" when missing). Outputs: `label` and `probabilities` (one column
per class, in the order of the metadata's `classes`) for classifiers, `variable` for
regressors. Needs the extra: pip install 'conveyor-sklearn[onnx]'."""
    parser.add_argument("--format", required=True, choices=FORMATS, help="the export format")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write it (default: NAME-vVERSION.onnx in the current "
                             "folder)")
    parser.add_argument("--model", metavar="NAME:VERSION",
                        help="the version to export (default: the champion)")


def run(args: argparse.Namespace, app: Any) -> int:
    from conveyor import api

    name, version, alias = api.parse_model_spec(args.model)
    _require_extra()
    loaded = api.load_model(app, name, version=version, alias=alias)
    output = (app.directory / args.output).resolve() if args.output else \
        app.directory / f"{loaded.name}-v{loaded.number}.onnx"
    if not output.parent.is_dir():
        raise conveyor.UsageError(f"-o {args.output}: folder {output.parent} does not exist")
    model = to_onnx(loaded.model, description=f"{loaded.name} v{loaded.number}")
    meta = {"conveyor.model": loaded.name, "conveyor.version": str(loaded.number),
            "conveyor.run_id": loaded.run_id, "conveyor.sha256": loaded.sha256}
    if loaded.contract is not None:  # the version's contract travels with the file
        import json

        meta["conveyor.contract"] = json.dumps(loaded.contract.to_dict(), sort_keys=True)
        if loaded.contract.transforms:
            print("note: the ONNX graph starts after this model's row transforms ("
                  + ", ".join(f"{t.stage} ({t.uses})" for t in loaded.contract.transforms)
                  + "): apply them to raw records first; metadata 'conveyor.contract' "
                    "records them")
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(model.SerializeToString())
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
    inputs = ", ".join(f"{i.name}" for i in model.graph.input)
    print(f"✓ {loaded.name} v{loaded.number} exported to {output} "
          f"({output.stat().st_size:,} bytes; inputs: {inputs})")
    return 0


def _require_extra() -> None:
    try:
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError as exc:
        raise conveyor.UsageError(f"conveyor export --format onnx needs {exc.name}, which is not "
                                  "installed", hint=EXTRA_HINT) from exc


def feature_types(pipeline: Any) -> list[tuple[str, str]]:
    """(column, "double" | "string") for each input of the exported graph, in the order of the
    Pipeline's `feature_names_in_`."""
    preprocess = _step(pipeline, "preprocess")
    kinds: dict[str, str] = {}
    for name, _transformer, columns in preprocess.transformers_:
        for column in columns if name in ("numeric", "categorical") else ():
            kinds[column] = "double" if name == "numeric" else "string"
    return [(c, kinds.get(c, "double")) for c in pipeline.feature_names_in_]


def to_onnx(pipeline: Any, *, description: str = "the model", precision: str = "float",
            estimator: bool = True) -> Any:
    """The ONNX ModelProto of a conveyor-sklearn Pipeline (prepare -> preprocess -> model).

    `precision` "float": the estimator computes in float32 (the input cast to it), the form
    most ONNX runtimes take; "double": in float64 like scikit-learn (`conveyor_sklearn.
    compiling` adds tree ensembles itself, `onnx_trees`). Without `estimator`, the graph ends
    with the preprocessed features (output `variable`, [N, F] double)."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
    from skl2onnx.sklapi import CastTransformer
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline

    model = _step(pipeline, "model")
    preprocess = copy.deepcopy(_step(pipeline, "preprocess"))
    for name, transformer, _columns in preprocess.transformers_:
        imputer = getattr(transformer, "named_steps", {}).get("impute")
        if imputer is None:
            continue
        if name == "categorical":
            imputer.missing_values = ""  # ONNX strings have no NaN: "" stands for missing
        else:
            # onnxruntime's Imputer operator is float32 only: impute in double instead.
            transformer.steps[0] = ("impute", _double_imputer(imputer))
    import numpy as np

    if not estimator:
        graph = Pipeline([("preprocess", preprocess)])
        opset: Any = DOUBLE_OPSET
    elif precision == "double":
        graph = Pipeline([("preprocess", preprocess), ("model", model)])
        opset = DOUBLE_OPSET
    else:
        cast = CastTransformer(dtype=np.float32).fit(np.zeros((1, 1)))
        graph = Pipeline([("preprocess", preprocess), ("cast", cast), ("model", model)])
        opset = None
    inputs = [(c, DoubleTensorType([None, 1]) if kind == "double" else StringTensorType([None, 1]))
              for c, kind in feature_types(pipeline)]
    options = {id(model): {"zipmap": False}} if estimator and is_classifier(model) else None
    try:
        return convert_sklearn(graph, initial_types=inputs, options=options,
                               target_opset=opset,
                               doc_string=f"{description}, exported by Conveyor")
    except Exception as exc:
        raise _conversion_error(model, exc) from exc


def _conversion_error(estimator: Any, exc: Exception) -> conveyor.ConveyorError:
    from importlib.metadata import version

    kind = type(estimator)
    path = f"{kind.__module__.split('._')[0]}.{kind.__name__}"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if "Expected an int, got a boolean" in str(exc):
        return conveyor.UsageError(
            f"skl2onnx {version('skl2onnx')} cannot write {path} with protobuf "
            f"{version('protobuf')}: {first}",
            hint="install protobuf<7 (the [onnx] extra of conveyor-sklearn pins it)")
    return conveyor.UsageError(
        f"skl2onnx {version('skl2onnx')} cannot convert the estimator {path}: "
        f"{type(exc).__name__}: {first}",
        hint="train a model skl2onnx converts (e.g. model=hist_gradient_boosting, "
             "random_forest or logistic_regression; the full list: "
             "skl2onnx.supported_converters()), or score this one with `conveyor predict`")


def _step(pipeline: Any, name: str) -> Any:
    steps = dict(getattr(pipeline, "steps", []))
    if name not in steps:
        raise conveyor.UsageError(
            f"the model is a {type(pipeline).__name__}, not a Pipeline trained by "
            "conveyor-sklearn (prepare -> preprocess -> model); only those export to ONNX")
    return steps[name]


# The opsets of a double-precision graph (its tree ensembles: `onnx_trees`, ai.onnx.ml 5).
DOUBLE_OPSET = {"": 18, "ai.onnx.ml": 3}


class _DoubleImputerMixin:
    """Marks a fitted SimpleImputer to be converted by `_convert_double_imputer`."""


def _double_imputer(imputer: Any) -> Any:
    from sklearn.impute import SimpleImputer

    kind = _register_double_imputer(SimpleImputer)
    clone = kind.__new__(kind)
    clone.__dict__.update(imputer.__dict__)
    return clone


_REGISTERED: dict[str, Any] = {}


def _register_double_imputer(base: type) -> type:
    if "kind" in _REGISTERED:
        return _REGISTERED["kind"]
    from skl2onnx import update_registered_converter
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes

    kind = type("ConveyorDoubleImputer", (_DoubleImputerMixin, base), {})
    update_registered_converter(kind, "ConveyorDoubleImputer",
                                calculate_sklearn_imputer_output_shapes, _convert_double_imputer)
    _REGISTERED["kind"] = kind
    return kind


def _convert_double_imputer(scope: Any, operator: Any, container: Any) -> None:
    """Where(IsNaN(x), statistics, x): standard ONNX operators, any float type."""
    import numpy as np
    from skl2onnx.common.data_types import guess_numpy_type
    from skl2onnx.operator_converters.common import concatenate_variables

    imputer = operator.raw_operator
    x = concatenate_variables(scope, operator.inputs, container)
    dtype = guess_numpy_type(operator.inputs[0].type)
    statistics = scope.get_unique_variable_name("statistics")
    values = np.asarray(imputer.statistics_, dtype=dtype).reshape(1, -1)
    from onnx import numpy_helper

    container.add_initializer(statistics, None, None, numpy_helper.from_array(values, statistics))
    missing = scope.get_unique_variable_name("missing")
    container.add_node("IsNaN", [x], [missing], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Where", [missing, statistics, x], [operator.outputs[0].full_name],
                       name=scope.get_unique_operator_name("Where"))


EXPORT_COMMAND = conveyor.CliCommand(
    "export", "convert a registered model (preprocessing included) to ONNX for embedded use",
    configure, run,
    description="Export the champion (or --model NAME:VERSION) with skl2onnx, preprocessing "
                "included, for onnxruntime and other ONNX runtimes.")
