"""The ONNX graph of a standard conveyor-sklearn Pipeline, written without skl2onnx.

`preprocess.build_preprocessor` makes one ColumnTransformer shape: numbers median-imputed and
standard-scaled, text imputed with a constant and one-hot encoded. This module writes exactly
that with plain ONNX operators in double precision (imputation `Where(IsNaN(x), median, x)`,
scaling `(x - mean) / scale` as scikit-learn computes it, one-hot encoding with ai.onnx.ml's
OneHotEncoder, a value never seen becoming zeros), then the estimator: a tree ensemble
(`onnx_trees`) or a linear model (`X @ coef + intercept`, then the logistic or softmax of
LogisticRegression). skl2onnx is not imported: it costs about a second of CPU per process, paid
by every run that registers a version. `graph(pipeline)` returns None for anything else (another
preprocessing, another estimator); `compiling` then converts it with skl2onnx.

Inputs are one [N, 1] tensor per feature (double, or string with "" for missing), outputs
`probabilities` [N, classes] (classifiers) or `values` [N, 1] (regressors), both double.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conveyor_sklearn import onnx_trees

OPSET = 21  # Equal on strings needs 19
MISSING_TEXT = ""  # how a missing text value reaches the graph


@dataclass
class Linear:
    """`X @ coef + intercept`, then `output` ("values", "logistic" or "softmax")."""

    coef: Any  # [F, targets]
    base: list[float]
    output: str

    @property
    def n_targets(self) -> int:
        return int(self.coef.shape[1])


def estimator_spec(estimator: Any) -> onnx_trees.Ensemble | Linear | None:
    """How the estimator is written here, None when it is not."""
    import numpy as np

    trees = onnx_trees.ensemble(estimator)
    if trees is not None:
        return trees
    name = type(estimator).__name__
    coef = getattr(estimator, "coef_", None)
    if coef is None:
        return None
    coef = np.atleast_2d(np.asarray(coef, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64)).tolist()
    if name == "Ridge" and coef.shape[0] == 1:
        return Linear(coef.T, intercept, "values")
    if name == "LogisticRegression" and getattr(estimator, "solver", "") != "liblinear" and \
            getattr(estimator, "multi_class", "auto") in ("auto", "multinomial", "deprecated"):
        output = "logistic" if coef.shape[0] == 1 else "softmax"
        return Linear(coef.T, intercept, output)
    return None


def graph(pipeline: Any, feature_types: list[tuple[str, str]]) -> Any:
    """The pipeline's ONNX ModelProto, or None when its preprocessing or estimator is not one
    this module writes."""
    steps = dict(pipeline.steps)
    spec = estimator_spec(steps["model"])
    blocks = _blocks(steps["preprocess"]) if spec is not None else None
    if blocks is None:
        return None
    from onnx import TensorProto, helper

    builder = _Builder()
    inputs = [helper.make_tensor_value_info(
        name, TensorProto.DOUBLE if kind == "double" else TensorProto.STRING, [None, 1])
        for name, kind in feature_types]
    outputs = [builder.block(kind, transformer, columns)
               for kind, transformer, columns in blocks]
    features = builder.node("Concat", outputs, axis=1) if len(outputs) > 1 else outputs[0]
    from sklearn.base import is_classifier

    model = helper.make_model(
        helper.make_graph(builder.nodes, "conveyor", inputs, [], builder.initializers),
        opset_imports=[helper.make_opsetid("", OPSET),
                       helper.make_opsetid("ai.onnx.ml", onnx_trees.ML_OPSET)])
    onnx_trees.append(model, features, spec, classifier=is_classifier(steps["model"]),
                      nan_free=_imputes_every_column(blocks))
    return model


def _imputes_every_column(blocks: list[tuple[str, Any, list[str]]]) -> bool:
    """Whether no NaN leaves the preprocessing: numbers imputed with finite medians (a column
    empty at training has a NaN one), text one-hot encoded into 0 and 1."""
    import numpy as np

    return all(kind != "numeric" or
               bool(np.all(np.isfinite(np.asarray(steps["impute"].statistics_, dtype=float))))
               for kind, steps, _columns in blocks)


def _blocks(preprocess: Any) -> list[tuple[str, Any, list[str]]] | None:
    """The ColumnTransformer's blocks ("numeric" / "categorical", fitted steps, columns) when
    it is the one `build_preprocessor` makes, else None."""
    import numpy as np

    if type(preprocess).__name__ != "ColumnTransformer":
        return None
    blocks = []
    for name, transformer, columns in preprocess.transformers_:
        if name == "remainder" and transformer == "drop":
            continue
        steps = dict(getattr(transformer, "steps", []))
        if name == "numeric" and set(steps) == {"impute", "scale"}:
            scale = steps["scale"]
            if not (scale.with_mean and scale.with_std) or steps["impute"].add_indicator:
                return None
        elif name == "categorical" and set(steps) == {"impute", "encode"}:
            encode = steps["encode"]
            if encode.drop is not None or any(group is not None for group in
                                              encode.infrequent_categories_):
                return None
            if not all(isinstance(c, str) for cats in encode.categories_ for c in cats) or \
                    not isinstance(steps["impute"].fill_value, str):
                return None
        else:
            return None
        if not all(isinstance(c, str) for c in np.atleast_1d(columns)):
            return None
        blocks.append((name, steps, list(columns)))
    return blocks or None


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def name(self, hint: str) -> str:
        self._count += 1
        return f"conveyor_{hint}_{self._count}"

    def node(self, op: str, inputs: list[str], domain: str = "", **attributes: Any) -> str:
        from onnx import helper

        output = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, domain=domain,
                                           **attributes))
        return output

    def constant(self, value: Any, hint: str) -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def block(self, kind: str, steps: dict[str, Any], columns: list[str]) -> str:
        import numpy as np
        from onnx import TensorProto

        if kind == "numeric":
            x = self.node("Concat", columns, axis=1) if len(columns) > 1 else columns[0]
            median = self.constant(np.asarray(steps["impute"].statistics_,
                                              dtype=np.float64).reshape(1, -1), "median")
            x = self.node("Where", [self.node("IsNaN", [x]), median, x])
            mean = self.constant(np.asarray(steps["scale"].mean_).reshape(1, -1), "mean")
            scale = self.constant(np.asarray(steps["scale"].scale_).reshape(1, -1), "scale")
            return self.node("Div", [self.node("Sub", [x, mean]), scale])
        fill = steps["impute"].fill_value
        empty = self.constant(np.array([MISSING_TEXT], dtype=object), "empty")
        filled = self.constant(np.array([fill], dtype=object), "fill")
        encoded = []
        for column, categories in zip(columns, steps["encode"].categories_, strict=True):
            text = self.node("Where", [self.node("Equal", [column, empty]), filled, column])
            hot = self.node("OneHotEncoder", [text], domain="ai.onnx.ml",
                            cats_strings=[str(c) for c in categories], zeros=1)
            shape = self.constant(np.array([-1, len(categories)], dtype=np.int64), "shape")
            encoded.append(self.node("Reshape", [self.node("Cast", [hot],
                                                           to=TensorProto.DOUBLE), shape]))
        return self.node("Concat", encoded, axis=1) if len(encoded) > 1 else encoded[0]
