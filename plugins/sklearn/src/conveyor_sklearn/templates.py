"""`conveyor init --template classification|regression`."""

from __future__ import annotations

from pathlib import Path

import conveyor

GITIGNORE = ".conveyor/\n__pycache__/\n"

CLASSIFICATION_CONFIG = """\
# {name}: predict whether a customer churns.
# Any setting can be overridden on the command line, e.g.
#   conveyor run model=random_forest model.params.n_estimators=300
#   conveyor run data.source=other.csv data.target=label data.schema=null
#   (data.schema, when set, describes data.source: a schema for other.csv would be
#    written by `conveyor schema infer other.csv -o other.yaml`)
defaults:
  - conveyor/defaults          # Conveyor's framework defaults (config library)
  - pipeline: train            # load -> validate -> split -> train -> evaluate -> register
  - model: hist_gradient_boosting
  - _self_

project: {name}

data:
  source: data/customers.csv
  target: churned
  id_column: customer_id                  # kept out of the features
  test_size: 0.2

evaluate:
  metrics: [accuracy, balanced_accuracy, f1_macro]
  gate:                                   # a model that misses the gate is registered, not promoted
    balanced_accuracy: ">= 0.60"
    f1_macro: ">= champion - 0.02"        # no worse than the current champion, give or take
  slices:                                 # and no region may be much worse
    column: region
    gate: {{balanced_accuracy: ">= 0.55"}}
"""

REGRESSION_CONFIG = """\
# {name}: predict what a house sells for.
defaults:
  - conveyor/defaults
  - pipeline: train
  - model: hist_gradient_boosting_regressor
  - _self_

project: {name}

data:
  source: data/houses.csv
  target: price
  id_column: house_id
  stratify: false

evaluate:
  metrics: [r2, neg_root_mean_squared_error, neg_mean_absolute_error]
  gate:
    r2: ">= 0.70"
    neg_root_mean_squared_error: ">= champion - 2"
"""

README = """\
# {name}

A Conveyor project ({kind}). Run it:

    conveyor run                 # train, evaluate, register
    conveyor runs list           # what ran
    conveyor plan model.params.learning_rate=0.05   # what would re-run, and why
    conveyor models list         # registered versions and the champion

The data in `data/` is synthetic; point `data.source` at your own file to use yours.
"""


def _write(destination: Path, name: str, kind: str, config: str, data_name: str,
           frame_factory) -> None:
    (destination / "data").mkdir(parents=True, exist_ok=True)
    frame_factory().to_csv(destination / "data" / data_name, index=False)
    (destination / "conveyor.yaml").write_text(config.format(name=name))
    (destination / "README.md").write_text(README.format(name=name, kind=kind))
    (destination / ".gitignore").write_text(GITIGNORE)


def _classification(destination: Path, name: str) -> None:
    from conveyor_sklearn.datagen import customers

    _write(destination, name, "classification", CLASSIFICATION_CONFIG, "customers.csv", customers)


def _regression(destination: Path, name: str) -> None:
    from conveyor_sklearn.datagen import houses

    _write(destination, name, "regression", REGRESSION_CONFIG, "houses.csv", houses)


CLASSIFICATION = conveyor.ProjectTemplate(
    "classification", "churn prediction on synthetic customers", _classification)
REGRESSION = conveyor.ProjectTemplate(
    "regression", "house prices on synthetic sales", _regression)
