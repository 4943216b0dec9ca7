"""Tree ensembles as ONNX computing in double precision: ai.onnx.ml TreeEnsemble (opset 5).

skl2onnx writes scikit-learn's forests and gradient boosting as TreeEnsembleClassifier and
TreeEnsembleRegressor (ai.onnx.ml 1-3), whose outputs are float32: a sum of 200 trees' leaves
then carries float32 rounding (1e-5 and more on values of a few hundred), and a forest's tie
(100 votes to 100) is broken by rounding. TreeEnsemble (ai.onnx.ml 5, onnxruntime >= 1.18)
takes double inputs, splits and leaves and returns doubles; this module writes it from the
fitted estimator itself:

* forests and decision trees (`RandomForest*`, `ExtraTrees*`, `DecisionTree*`): the features
  are rounded to float32 first, as scikit-learn's trees do, and compared `<=` with the double
  thresholds; classifiers average each tree's class fractions, regressors its leaf values;
* `HistGradientBoosting*`: features in double (as scikit-learn predicts), `<=` the thresholds,
  missing values the way each split learnt; the baseline added, then the loss's link: logistic
  (binary), softmax (multiclass) or identity (squared error regression);
* LightGBM's and XGBoost's estimators (`LGBM*`, `XGB*`), from their own dumps of the trees, with
  their objectives' links (binary logistic, softmax, squared error); XGBoost compares float32
  features `<` float32 splits, as it does itself.

`ensemble(estimator)` describes one, or returns None for an estimator it does not know (the
caller converts it with skl2onnx instead); `append(proto, features, spec)` adds it to a graph
that ends with the preprocessed features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# TreeEnsemble's nodes_modes and aggregate_function / post_transform codes (ai.onnx.ml 5).
BRANCH_LEQ = 0
AGGREGATE_SUM = 1
POST_NONE = 0
ML_OPSET = 5


@dataclass
class Ensemble:
    """Trees as flat arrays, one copy per target: `roots` index the nodes, a node's children
    are nodes or leaves (`*_leaf`), each leaf adds `leaf_weight` to `leaf_target`."""

    n_targets: int
    float32_inputs: bool  # the estimator rounds features to float32 before comparing
    output: str  # "values" (regressor), "probabilities", "logistic", "softmax"
    base: list[float]

    def __post_init__(self) -> None:
        self.roots: list[int] = []
        self.feature: list[int] = []
        self.split: list[float] = []
        self.true_id: list[int] = []
        self.true_leaf: list[int] = []
        self.false_id: list[int] = []
        self.false_leaf: list[int] = []
        self.missing_true: list[int] = []
        self.leaf_target: list[int] = []
        self.leaf_weight: list[float] = []

    def add_tree(self, left: Any, right: Any, feature: Any, threshold: Any, leaf_value: Any,
                 missing_left: Any, target: int) -> None:
        """One binary tree in scikit-learn's layout (children -1 at leaves): x <= threshold
        goes left (the "true" branch), NaN goes left where `missing_left`."""
        nodes: dict[int, int] = {}
        leaves: dict[int, int] = {}
        for index in range(len(left)):
            if left[index] < 0:
                leaves[index] = len(self.leaf_weight)
                self.leaf_target.append(target)
                self.leaf_weight.append(float(leaf_value[index]))
            else:
                nodes[index] = len(self.feature)
                self.feature.append(int(feature[index]))
                self.split.append(float(threshold[index]))
                self.missing_true.append(int(bool(missing_left[index])))
                self.true_id.append(0)
                self.true_leaf.append(0)
                self.false_id.append(0)
                self.false_leaf.append(0)
        if 0 in leaves:  # a tree that is one leaf: a split whose both sides reach it
            nodes[0] = len(self.feature)
            self.feature.append(0)
            self.split.append(0.0)
            self.missing_true.append(1)
            for column in (self.true_id, self.false_id):
                column.append(leaves[0])
            self.true_leaf.append(1)
            self.false_leaf.append(1)
            self.roots.append(nodes[0])
            return
        for index, position in nodes.items():
            for child, ids, is_leaf in ((left[index], self.true_id, self.true_leaf),
                                        (right[index], self.false_id, self.false_leaf)):
                if child in leaves:
                    ids[position], is_leaf[position] = leaves[child], 1
                else:
                    ids[position], is_leaf[position] = nodes[child], 0
        self.roots.append(nodes[0])


def ensemble(estimator: Any) -> Ensemble | None:
    """The estimator as an `Ensemble`, or None for one this module does not write."""
    name = type(estimator).__name__
    if name.startswith(("RandomForest", "ExtraTrees", "DecisionTree")):
        return _forest(estimator)
    if name.startswith("HistGradientBoosting"):
        return _hist_gradient_boosting(estimator)
    if name in ("LGBMClassifier", "LGBMRegressor"):
        return _lightgbm(estimator)
    if name in ("XGBClassifier", "XGBRegressor"):
        return _xgboost(estimator)
    return None


@dataclass
class _Flat:
    """A tree as scikit-learn lays one out (children -1 at leaves), built node by node."""

    left: list[int]
    right: list[int]
    feature: list[int]
    threshold: list[float]
    value: list[float]
    missing_left: list[bool]

    @classmethod
    def empty(cls) -> _Flat:
        return cls([], [], [], [], [], [])

    def node(self) -> int:
        for column, blank in ((self.left, -1), (self.right, -1), (self.feature, 0),
                              (self.threshold, 0.0), (self.value, 0.0),
                              (self.missing_left, False)):
            column.append(blank)
        return len(self.left) - 1

    def into(self, spec: Ensemble, target: int) -> None:
        spec.add_tree(self.left, self.right, self.feature, self.threshold, self.value,
                      self.missing_left, target)


def _lightgbm(estimator: Any) -> Ensemble | None:
    """LightGBM: features in double, `<=` the double thresholds; NaN the default way."""
    dump = estimator.booster_.dump_model()
    objective = str(dump.get("objective", "")).split()
    per_iteration = int(dump.get("num_tree_per_iteration", 1))
    outputs = {"binary": "logistic", "multiclass": "softmax", "regression": "values"}
    if not objective or objective[0] not in outputs or \
            any(p.startswith("sigmoid:") and p != "sigmoid:1" for p in objective):
        return None
    spec = Ensemble(per_iteration, False, outputs[objective[0]], [0.0] * per_iteration)
    for index, info in enumerate(dump["tree_info"]):
        flat = _Flat.empty()
        if not _lightgbm_node(info["tree_structure"], flat):
            return None
        flat.into(spec, index % per_iteration)
    return spec


def _lightgbm_node(node: dict[str, Any], flat: _Flat) -> bool:
    index = flat.node()
    if "leaf_value" in node:
        flat.value[index] = float(node["leaf_value"])
        return True
    if node.get("decision_type") != "<=" or node.get("missing_type") not in ("None", "NaN"):
        return False  # categorical splits, zero as missing: not written here
    flat.feature[index] = int(node["split_feature"])
    flat.threshold[index] = float(node["threshold"])
    flat.missing_left[index] = bool(node.get("default_left"))
    flat.left[index] = len(flat.left)
    if not _lightgbm_node(node["left_child"], flat):
        return False
    flat.right[index] = len(flat.left)
    return _lightgbm_node(node["right_child"], flat)


def _xgboost(estimator: Any) -> Ensemble | None:
    """XGBoost: features rounded to float32 and `<` the float32 splits (written as `<=` the
    float32 just below), NaN the "missing" way; the base margin measured on one row."""
    import json

    import numpy as np
    import xgboost

    booster = estimator.get_booster()
    objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
    outputs = {"binary:logistic": "logistic", "multi:softprob": "softmax",
               "multi:softmax": "softmax", "reg:squarederror": "values"}
    if objective not in outputs:
        return None
    trees = [json.loads(text) for text in booster.get_dump(dump_format="json")]
    classes = len(getattr(estimator, "classes_", ()))
    per_iteration = classes if classes > 2 else 1
    spec = Ensemble(per_iteration, True, outputs[objective], [0.0] * per_iteration)
    leaves: list[dict[int, float]] = []
    for index, tree in enumerate(trees):
        flat, ids = _Flat.empty(), {}
        _xgboost_node(tree, flat, ids)
        flat.into(spec, index % per_iteration)
        leaves.append({node_id: flat.value[i] for node_id, i in ids.items()})
    # The base margin: one row's margin less the leaves it reaches (the objective's
    # base_score and its link, however this XGBoost version stores them).
    row = xgboost.DMatrix(np.zeros((1, booster.num_features()), dtype=np.float32))
    margin = np.asarray(booster.predict(row, output_margin=True), dtype=np.float64).ravel()
    reached = np.asarray(booster.predict(row, pred_leaf=True)).ravel()
    sums = np.zeros(per_iteration)
    for index, leaf in enumerate(reached):
        sums[index % per_iteration] += leaves[index][int(leaf)]
    spec.base = (margin[:per_iteration] - sums).tolist()
    return spec


def _xgboost_node(node: dict[str, Any], flat: _Flat, ids: dict[int, int]) -> int:
    import numpy as np

    index = flat.node()
    ids[int(node["nodeid"])] = index
    if "leaf" in node:
        flat.value[index] = float(node["leaf"])
        return index
    split = np.float32(node["split_condition"])
    flat.feature[index] = int(str(node["split"]).lstrip("f"))
    flat.threshold[index] = float(np.nextafter(split, np.float32(-np.inf)))
    children = {int(child["nodeid"]): child for child in node["children"]}
    flat.missing_left[index] = int(node["missing"]) == int(node["yes"])
    flat.left[index] = _xgboost_node(children[int(node["yes"])], flat, ids)
    flat.right[index] = _xgboost_node(children[int(node["no"])], flat, ids)
    return index


def _forest(estimator: Any) -> Ensemble | None:
    import numpy as np

    trees = getattr(estimator, "estimators_", None) or [estimator]
    classifier = hasattr(estimator, "classes_")
    if getattr(estimator, "n_outputs_", 1) != 1:
        return None
    n_targets = len(estimator.classes_) if classifier else 1
    spec = Ensemble(n_targets, True, "probabilities" if classifier else "values",
                    [0.0] * n_targets)
    for tree in trees:
        t = tree.tree_
        missing = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=bool))
        values = t.value[:, 0, :]
        if classifier:
            totals = values.sum(axis=1, keepdims=True)
            values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)
        values = values / len(trees)
        for target in range(n_targets):
            spec.add_tree(t.children_left, t.children_right, t.feature, t.threshold,
                          values[:, target], missing, target)
    return spec


def _hist_gradient_boosting(estimator: Any) -> Ensemble | None:
    import numpy as np

    link = type(estimator._loss.link).__name__ if hasattr(estimator._loss, "link") else ""
    classifier = hasattr(estimator, "classes_")
    per_iteration = estimator.n_trees_per_iteration_
    if classifier:
        output = "logistic" if per_iteration == 1 else "softmax"
    elif link == "IdentityLink":
        output = "values"
    else:
        return None  # another link (Poisson's log, ...): skl2onnx's conversion instead
    if getattr(estimator, "is_categorical_", None) is not None and \
            np.any(estimator.is_categorical_):
        return None
    base = np.asarray(estimator._baseline_prediction, dtype=np.float64).ravel().tolist()
    spec = Ensemble(per_iteration, False, output, base)
    for iteration in estimator._predictors:
        for target, predictor in enumerate(iteration):
            nodes = predictor.nodes
            leaf = nodes["is_leaf"].astype(bool)
            left = np.where(leaf, -1, nodes["left"].astype(np.int64))
            right = np.where(leaf, -1, nodes["right"].astype(np.int64))
            spec.add_tree(left, right, nodes["feature_idx"], nodes["num_threshold"],
                          nodes["value"], nodes["missing_go_to_left"], target)
    return spec


def append(proto: Any, features: str, spec: Any, *, classifier: bool,
           nan_free: bool = False) -> None:
    """Add the ensemble (or a linear model, `onnx_graph.Linear`: `coef`, `base`, `output`)
    after the graph's tensor `features` ([N, F] double): outputs `probabilities`
    ([N, classes]) for a classifier, `values` ([N, 1]) for a regressor. `nan_free`: the graph
    guarantees `features` holds no NaN (its preprocessing imputes every column), so the trees
    are written without missing-value routes (onnxruntime then skips a NaN test per node:
    about 10% of the ensemble's time, measured on a 190-tree HistGradientBoosting model)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = proto.graph
    nodes: list[Any] = []
    source = features
    if hasattr(spec, "coef"):
        graph.initializer.append(numpy_helper.from_array(spec.coef, "conveyor_coef"))
        nodes.append(helper.make_node("MatMul", [features, "conveyor_coef"],
                                      ["conveyor_scores"]))
    elif spec.float32_inputs:
        nodes += [helper.make_node("Cast", [features], ["conveyor_x32"], to=TensorProto.FLOAT),
                  helper.make_node("Cast", ["conveyor_x32"], ["conveyor_x64"],
                                   to=TensorProto.DOUBLE)]
        source = "conveyor_x64"
    if not hasattr(spec, "coef"):
        nodes.append(_tree_node(source, spec, nan_free=nan_free))
    graph.initializer.append(numpy_helper.from_array(
        np.asarray(spec.base, dtype=np.float64).reshape(1, -1), "conveyor_base"))
    nodes.append(helper.make_node("Add", ["conveyor_scores", "conveyor_base"], ["conveyor_raw"]))
    output = "probabilities" if classifier else "values"
    if spec.output in ("values", "probabilities"):
        nodes.append(helper.make_node("Identity", ["conveyor_raw"], [output]))
    elif spec.output == "softmax":
        nodes.append(helper.make_node("Softmax", ["conveyor_raw"], [output], axis=1))
    else:  # logistic: [1 - p, p]
        graph.initializer.append(numpy_helper.from_array(np.ones((1, 1)), "conveyor_one"))
        nodes += [helper.make_node("Sigmoid", ["conveyor_raw"], ["conveyor_p"]),
                  helper.make_node("Sub", ["conveyor_one", "conveyor_p"], ["conveyor_q"]),
                  helper.make_node("Concat", ["conveyor_q", "conveyor_p"], [output], axis=1)]
    graph.node.extend(nodes)
    width = spec.n_targets if spec.output != "logistic" else 2
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(output, TensorProto.DOUBLE,
                                                      [None, width]))
    for opset in proto.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = max(opset.version, ML_OPSET)
            break
    else:
        proto.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))


def _tree_node(source: str, spec: Ensemble, *, nan_free: bool = False) -> Any:
    import numpy as np
    from onnx import helper, numpy_helper

    missing_true = [0] * len(spec.missing_true) if nan_free else spec.missing_true
    return helper.make_node(
        "TreeEnsemble", [source], ["conveyor_scores"], domain="ai.onnx.ml",
        name="conveyor_trees", n_targets=spec.n_targets, tree_roots=spec.roots,
        nodes_featureids=spec.feature,
        nodes_splits=numpy_helper.from_array(np.asarray(spec.split, dtype=np.float64), "s"),
        nodes_modes=numpy_helper.from_array(np.full(len(spec.split), BRANCH_LEQ, np.uint8), "m"),
        nodes_truenodeids=spec.true_id, nodes_trueleafs=spec.true_leaf,
        nodes_falsenodeids=spec.false_id, nodes_falseleafs=spec.false_leaf,
        nodes_missing_value_tracks_true=missing_true,
        leaf_targetids=spec.leaf_target,
        leaf_weights=numpy_helper.from_array(np.asarray(spec.leaf_weight, dtype=np.float64),
                                             "w"),
        aggregate_function=AGGREGATE_SUM, post_transform=POST_NONE)
