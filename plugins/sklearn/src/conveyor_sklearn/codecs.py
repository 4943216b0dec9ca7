"""Artifact codecs: DataFrames as Arrow IPC, estimators with skops (no pickle, trusted types only)."""

from __future__ import annotations

import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import conveyor

# The exact types a stored model may contain, by full name: no module prefixes, and of builtins
# only plain containers and JSON values. They cover what the plugin's pipelines store (the
# preprocessing of preprocess.py, every estimator of the `model` config group, numpy arrays,
# dtypes and random generators, scikit-learn's losses, trees and binners); a test saves each of
# them to check that the list is complete. Any other public scikit-learn estimator class (exact
# names from sklearn.utils.all_estimators) is accepted too, as the `_target_` rules accept it.
TRUSTED_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.set", "builtins.frozenset",
    "builtins.slice", "builtins.str", "builtins.int", "builtins.float", "builtins.bool",
    "builtins.complex", "builtins.NoneType",
    "collections.OrderedDict", "collections.defaultdict",
    "numpy.ndarray", "numpy.dtype", "numpy.ma.core.MaskedArray",
    *(f"numpy.{t}" for t in ("bool", "bool_", "int8", "int16", "int32", "int64", "uint8",
                             "uint16", "uint32", "uint64", "float16", "float32", "float64",
                             "longdouble", "complex64", "complex128", "str_", "bytes_",
                             "object_", "datetime64", "timedelta64")),
    "numpy.random.mtrand.RandomState", "numpy.random._generator.Generator",
    "numpy.random.PCG64", "numpy.random.MT19937", "numpy.random.Philox", "numpy.random.SFC64",
    "scipy.sparse._csr.csr_matrix", "scipy.sparse._csr.csr_array",
    "scipy.sparse._csc.csc_matrix", "scipy.sparse._csc.csc_array",
    # the preprocessing of conveyor_sklearn.preprocess.build_pipeline
    "sklearn.pipeline.Pipeline", "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.impute._base.SimpleImputer", "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder", "sklearn.preprocessing._label.LabelEncoder",
    # the estimators of the `model` config group, and what they hold
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._forest.RandomForestClassifier",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.linear_model._logistic.LogisticRegression", "sklearn.linear_model._ridge.Ridge",
    "sklearn.neighbors._nearest_centroid.NearestCentroid",
    # scikit-learn's losses and links (what gradient boosting and linear models hold): the
    # internal types skops reviewed and trusts by default, by exact name
    *(f"sklearn._loss.link.{t}" for t in ("IdentityLink", "LogitLink", "HalfLogitLink",
                                          "LogLink", "MultinomialLogit", "Interval")),
    *(f"sklearn._loss.loss.{t}" for t in ("HalfBinomialLoss", "HalfMultinomialLoss",
                                          "HalfSquaredError", "AbsoluteError", "ExponentialLoss",
                                          "HalfGammaLoss", "HalfPoissonLoss", "HuberLoss",
                                          "PinballLoss")),
    *(f"sklearn._loss._loss.Cy{t}" for t in ("HalfBinomialLoss", "HalfMultinomialLoss",
                                             "HalfSquaredError", "AbsoluteError",
                                             "ExponentialLoss", "HalfGammaLoss",
                                             "HalfPoissonLoss", "HalfTweedieLoss",
                                             "HalfTweedieLossIdentity", "HuberLoss",
                                             "PinballLoss")),
    *(f"sklearn.linear_model._sgd_fast.{t}" for t in ("Hinge", "SquaredHinge", "ModifiedHuber",
                                                      "EpsilonInsensitive",
                                                      "SquaredEpsilonInsensitive")),
    # what a fitted MLP keeps: plain Python objects holding arrays
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    # LightGBM's scikit-learn estimators (the `model=lightgbm*` options). A fitted one holds a
    # Booster whose state is LightGBM's own text model, parsed by LGBM_BoosterLoadModelFromString
    # when it is restored: data, not code.
    "lightgbm.sklearn.LGBMClassifier", "lightgbm.sklearn.LGBMRegressor",
    "lightgbm.sklearn.LGBMRanker", "lightgbm.basic.Booster",
    # XGBoost's scikit-learn estimators (the `model=xgboost*` options). A fitted one holds a
    # Booster whose state is XGBoost's own binary model (a bytearray), restored by
    # XGBoosterUnserializeFromBuffer: data, not code.
    "xgboost.sklearn.XGBClassifier", "xgboost.sklearn.XGBRegressor", "xgboost.core.Booster",
    "builtins.bytearray",
})
# Functions a stored model may refer to (and call when it predicts): the pipeline's own step.
TRUSTED_FUNCTIONS = frozenset({"conveyor_sklearn.preprocess.as_model_input"})
# Inside each saved model: the exact types it was saved with, covered by the artifact's sha256.
RECORD = "conveyor/types.json"
def _is_frame(obj: Any) -> bool:
    kind = type(obj)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas")


def _dump_frame(frame: Any, path: Path) -> None:
    """Arrow IPC (Feather v2, lz4): for a local cache it writes ~6x faster than Parquet, and
    pandas' metadata round-trips any index and column names."""
    import pyarrow as pa
    import pyarrow.feather as feather

    feather.write_feather(pa.Table.from_pandas(frame), path, compression="lz4")


def _load_frame(path: Path) -> Any:
    import pyarrow.feather as feather

    return feather.read_table(path).to_pandas()


def _dump_parquet(frame: Any, path: Path) -> None:
    frame.to_parquet(path)


def _load_parquet(path: Path) -> Any:
    import pandas as pd

    return pd.read_parquet(path)


def _is_estimator(obj: Any) -> bool:
    return hasattr(obj, "fit") and hasattr(obj, "get_params")


_SKOPS_IMPORT = threading.Lock()


def _skops_io() -> Any:
    """skops.io, imported without its default trusted-types table.

    On import, skops builds that table by importing every scikit-learn estimator (and pytest,
    through sklearn.utils._testing): about 0.3 s that saving a model never needs. Loading does
    not rely on the table either: `_load_estimator` checks every type in the file against
    TRUSTED_TYPES itself and hands skops exactly the names it checked.
    """
    import sys

    with _SKOPS_IMPORT:  # the runner's warm-up thread may be importing it right now
        if "skops.io" not in sys.modules:
            import sklearn.utils

            original = sklearn.utils.all_estimators
            sklearn.utils.all_estimators = lambda *args, **kwargs: []
            try:
                import skops.io
            finally:
                sklearn.utils.all_estimators = original
    import skops.io  # complete: a plain import waits for any import in progress

    return skops.io


class UntrustedModel(conveyor.StoreError):
    """A model file refused before anything in it was constructed."""


def _contents(path: Path) -> tuple[set[str], set[str], Any]:
    """The types and the functions in a skops file, read from its schema without importing or
    constructing anything, and the file's recorded list (None for files saved before it was
    kept). Every name skops itself would ask about is among them."""
    _skops_io()  # first: importing skops.io's modules otherwise builds its default table
    from skops.io._audit import Node, get_tree
    from skops.io._general import FunctionNode, MethodNode
    from skops.io._numpy import RandomGeneratorNode
    from skops.io._persist import read_schema
    from skops.io._utils import get_module

    try:
        with zipfile.ZipFile(path) as archive:
            schema, load_context = read_schema(archive)
            tree = get_tree(schema, load_context=load_context, trusted=None)
            record = (json.loads(archive.read(RECORD)) if RECORD in archive.namelist()
                      else None)
    except Exception as exc:
        raise UntrustedModel(f"the model {path.name} is not a readable skops file: "
                             f"{type(exc).__name__}: {exc}") from exc
    types: set[str] = set()
    functions: set[str] = set()
    others: set[str] = set()
    seen: set[int] = set()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        name = f"{node.module_name}.{node.class_name}"
        if isinstance(node, FunctionNode):
            functions.add(name)
        elif isinstance(node, MethodNode):
            others.add(f"{name}.{node.func} (a method)")
        else:
            types.add(name)
        if isinstance(node, RandomGeneratorNode):
            types.add(f"numpy.random.{node.bit_generator_name}")
        node.trusted = []  # so that skops' own audit below reports every name it would load
        for child in node.children.values():
            items = child if isinstance(child, list) else \
                list(child.values()) if isinstance(child, dict) else [child]
            for item in items:
                if isinstance(item, Node):
                    stack.append(item)
                elif type(item) is type:
                    types.add(f"{get_module(item)}.{item.__name__}")
    if others:
        types |= others
    # skops' audit with nothing trusted: a name it reports that the walk above did not see
    # (a node kind added by a later skops) is refused rather than let through.
    unseen = {n for n in tree.get_unsafe_set() if n not in types | functions}
    types |= {f"{n} (unrecognised)" for n in unseen}
    return types, functions, record


_ESTIMATORS: set[str] | None = None


def _public_estimator(name: str) -> bool:
    """A public scikit-learn estimator class, by exact name (what skops' own defaults trust)."""
    global _ESTIMATORS
    if not name.startswith("sklearn."):
        return False
    if _ESTIMATORS is None:
        from sklearn.utils import all_estimators

        _ESTIMATORS = {f"{c.__module__}.{c.__qualname__}" for _, c in all_estimators()}
    return name in _ESTIMATORS


def _refused(types: set[str], functions: set[str]) -> list[str]:
    return sorted([t for t in types if t not in TRUSTED_TYPES and not _public_estimator(t)]
                  + [f"{f} (a function)" for f in functions if f not in TRUSTED_FUNCTIONS])


def _dump_estimator(model: Any, path: Path) -> None:
    _skops_io().dump(model, path)
    types, functions, _ = _contents(path)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr(RECORD, json.dumps({"types": sorted(types),
                                             "functions": sorted(functions)}))


def _load_estimator(path: Path) -> Any:
    """Loads a model only if every type and function in it is both on the framework's list
    (TRUSTED_TYPES, TRUSTED_FUNCTIONS, public scikit-learn estimators) and on the list it was
    saved with. Nothing in the file is imported or constructed before that is checked."""
    skops_io = _skops_io()
    types, functions, record = _contents(path)
    refused = _refused(types, functions)
    if refused:
        raise UntrustedModel(
            f"the model {path.name} contains types that are not trusted: {', '.join(refused)}",
            hint="a model loads only if every type in it is on conveyor_sklearn.codecs."
                 "TRUSTED_TYPES or is a public scikit-learn estimator class (see "
                 "docs/security.md); Conveyor never writes builtins.exec or testing helpers")
    if record is not None:
        recorded = set(record.get("types") or []) | set(record.get("functions") or [])
        unrecorded = sorted((types | functions) - recorded)
        if unrecorded:
            raise UntrustedModel(
                f"the model {path.name} contains types it was not saved with: "
                f"{', '.join(unrecorded)}", hint="the file was altered after it was saved")
    return skops_io.load(path, trusted=sorted(types | functions))


def _import_arrow() -> None:
    import pyarrow.feather  # noqa: F401


def _import_skops() -> None:
    _skops_io()


ARROW = conveyor.Codec(name="arrow", suffix=".arrow", handles=_is_frame, dump=_dump_frame,
                       load=_load_frame, priority=10, prepare=_import_arrow)
# Still registered so artifacts of earlier versions load; new frames are written as Arrow.
PARQUET = conveyor.Codec(name="parquet", suffix=".parquet", handles=_is_frame, dump=_dump_parquet,
                         load=_load_parquet, priority=5)
SKOPS = conveyor.Codec(name="skops", suffix=".skops", handles=_is_estimator,
                       dump=_dump_estimator, load=_load_estimator, priority=10,
                       prepare=_import_skops)
