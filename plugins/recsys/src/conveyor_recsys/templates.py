"""`conveyor init NAME --template recommender`."""

from __future__ import annotations

from pathlib import Path

import conveyor

CONFIG = """\
# {name}: recommend items to customers from their past interactions.
# Any setting can be overridden on the command line, e.g.
#   conveyor run recsys.model=als recsys.als.factors=64
#   conveyor run recsys.split.method=leave_last_out
#   conveyor run recsys.split.test_days=7
#   conveyor run pipeline=recommend_ranked   # + a LightGBM ranker over the candidates
#   (feature tables for it: recsys.user_features=FILE recsys.item_features=FILE)
defaults:
  - conveyor/defaults
  - pipeline: recommend          # load -> split -> train -> evaluate -> register
  - _self_

project: {name}

recsys:
  source: data/interactions.csv
  user_column: user_id
  item_column: item_id
  timestamp_column: timestamp
  event_column: event
  weight_column: weight
  event_weights: {{view: 1.0, purchase: 5.0}}
  k: 10
  model: item_item               # popularity | item_item | als
  split:
    method: temporal             # temporal | leave_last_out
    test_fraction: 0.2           # the last 20% of the time range is the test period

evaluate:
  metrics: [ndcg@10, recall@10, map@10, mrr, hit_rate@10, coverage, novelty]
  gate:                          # a model that misses the gate is registered, not promoted
    ndcg@10: ">= 0.05"
    recall@10: ">= champion - 0.02"   # and no worse than the champion on the same test users

# Retraining from feedback (with conveyor-retrain; see its README, "Recommenders"): uncomment.
# retrain:
#   source_key: recsys.source    # the challenger trains on the history + the feedback files
#   compare: evaluation          # and its own evaluation compares it with the champion
#   when: {{metrics.hit_rate@10: "< champion - 0.05"}}
#   window: {{since: change, include_history: true}}
#   promote_if: {{ndcg@10: "+0"}}
#   overrides: [recsys.refit=true]  # the challenger registered also learns from the test period
"""

README = """\
# {name}

A Conveyor recommender project. Run it:

    conveyor run                         # load, split, train item_item, evaluate, register
    conveyor run recsys.model=als        # implicit's ALS instead
    conveyor run pipeline=recommend_ranked   # candidates re-ranked by LightGBM (lambdarank)
    conveyor runs list                   # what ran, with ndcg@10 and the baseline's
    conveyor models list                 # registered versions and the champion

The data in `data/interactions.csv` is synthetic (seeded); point `recsys.source` at your own
interactions (user, item, timestamp, event, weight) to use yours.
"""


def _recommender(destination: Path, name: str) -> None:
    from conveyor_recsys.datagen import interactions

    (destination / "data").mkdir(parents=True, exist_ok=True)
    interactions().to_csv(destination / "data" / "interactions.csv", index=False)
    (destination / "conveyor.yaml").write_text(CONFIG.format(name=name))
    (destination / "README.md").write_text(README.format(name=name))
    (destination / ".gitignore").write_text(".conveyor/\n__pycache__/\n")


RECOMMENDER = conveyor.ProjectTemplate(
    "recommender", "top-k recommendations from synthetic retail interactions", _recommender)
