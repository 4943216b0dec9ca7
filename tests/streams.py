"""Labelled weekly batches whose behaviour changes partway: the streams the closed loop is proved on.

Not the retail data the demo was written around: loan applications of a credit-risk lender
(numbers and categories, some missing values), generated here with fixed seeds.

    covariate  from week `change` on, incomes fall (many below anything in the training file),
               debt ratios rise past the old maximum, the region mix moves and a region never
               seen before appears, and the rule that decides who defaults changes too;
    concept    the applicants stay exactly as they were; only the rule that decides who
               defaults changes (a monitor of the inputs sees nothing).

`run_loop` drives the documented user path through the real console script (`schema infer`,
`run`, then `watch --once` per weekly batch) and returns the figures the tests assert and
`make bench` prints: the final champion's ROC AUC on fresh post-change data beside the oracle
(the same pipeline trained on every post-change batch) and the never-retrained model.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("covariate", "concept")
REGIONS = ["capital", "coast", "mountains", "plains", "islands"]
REGION_MIX = {"before": [0.35, 0.25, 0.15, 0.15, 0.10], "after": [0.10, 0.20, 0.15, 0.40, 0.15]}
EMPLOYMENT = ["salaried", "self-employed", "contract", "retired"]
TARGET, ID = "defaulted", "application_id"

POLICY = """\
retrain:
  when:
    drift.share: "> 0.3"                  # a third of the inputs moved...
    metrics.roc_auc: "< champion - 0.05"  # ...or the model lost 0.05 of its validation AUC
  mode: any
  consecutive: 1
  cooldown: 1
  min_rows: 800
  window: {since: change, max_batches: 8}  # train on everything since the change...
  refresh: true                            # ...and again as each new labelled week arrives
  holdout_fraction: 0.25
  promote_if: {roc_auc: "+0"}
"""


def generate_week(kind: str, week: int, rows: int, *, change: int, seed: int = 7) -> pd.DataFrame:
    """One week of applications with their outcome; the same arguments give the same rows."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    rng = np.random.default_rng([seed, KINDS.index(kind), week])
    after = week >= change
    moved = after and kind == "covariate"
    age = np.clip(rng.normal(41, 12, rows), 18, 85).round()
    income = np.exp(rng.normal(10.9 - (0.7 if moved else 0.0), 0.45, rows)).round(-1)
    debt_ratio = np.clip(rng.beta(2, 5, rows) + (0.35 if moved else 0.0), 0, None).round(4)
    accounts = rng.poisson(3, rows)
    mix = REGION_MIX["after" if moved else "before"]
    region = rng.choice(REGIONS, rows, p=mix).astype(object)
    if moved:
        region[rng.random(rows) < 0.08] = "overseas"  # a category the training file never had
    employment = rng.choice(EMPLOYMENT, rows, p=[0.6, 0.2, 0.15, 0.05])
    log_income = np.log(income) - 10.9
    if not after:
        logit = (-1.2 + 4.0 * (debt_ratio - 0.3) - 1.6 * log_income - 0.25 * (accounts - 3)
                 + 0.8 * (employment == "contract") - 0.5 * (region == "capital"))
    else:
        # The new rule: debt hardly matters any more, age and self-employment do, income
        # protects less, and the capital's applicants now default more often than others.
        logit = (-1.0 + 0.5 * (debt_ratio - 0.3) - 0.5 * log_income + 0.06 * (35 - age)
                 + 1.4 * (employment == "self-employed") + 0.7 * (region == "capital")
                 - 0.2 * (accounts - 3))
    defaulted = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame({
        ID: [f"w{week:02d}-{i:05d}" for i in range(rows)], "age": age, "income": income,
        "debt_ratio": debt_ratio, "open_accounts": accounts, "region": region,
        "employment": employment, TARGET: defaulted})
    # Missing values, as a real file has them: a few incomes and employment types unknown.
    frame.loc[rng.random(rows) < 0.03, "income"] = np.nan
    frame.loc[rng.random(rows) < 0.02, "employment"] = None
    return frame


@dataclass
class StreamFigures:
    kind: str
    change: int
    weeks: list[int]
    final_auc: float
    oracle_auc: float
    never_retrained_auc: float
    retrains: int  # decisions that trained a challenger
    promotions: int
    retrains_before_change: int
    batches_until_recovery: int | None  # weeks after the change until the champion first moved
    final_champion: int
    seconds: float
    weekly: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_project(root: Path, kind: str, *, history_weeks: int, rows: int, change: int,
                  conveyor: Callable[..., subprocess.CompletedProcess]) -> Path:
    """A new project as a user makes one: the history file, `schema infer`, one config."""
    root.mkdir(parents=True)
    (root / "data").mkdir()
    history = pd.concat([generate_week(kind, w, rows, change=change)
                         for w in range(history_weeks)], ignore_index=True)
    history.to_csv(root / "data" / "applications.csv", index=False)
    (root / "conveyor.yaml").write_text(
        "defaults:\n  - conveyor/defaults\n  - pipeline: train\n"
        "  - model: hist_gradient_boosting\n  - _self_\n\n"
        "project: credit\n"
        f"data:\n  source: data/applications.csv\n  target: {TARGET}\n  id_column: {ID}\n"
        "  schema: schema.yaml\n"
        "evaluate:\n  metrics: [roc_auc, accuracy]\n  primary: roc_auc\n\n" + POLICY)
    done = conveyor("schema", "infer", "data/applications.csv", "-o", "schema.yaml", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def fresh_post_change(kind: str, change: int, rows: int) -> pd.DataFrame:
    """Data the loop never saw, from the new regime: weeks far beyond the stream."""
    return pd.concat([generate_week(kind, 100 + i, rows, change=change, seed=99)
                      for i in range(3)], ignore_index=True)


def auc_of(model: Any, frame: pd.DataFrame) -> float:
    from sklearn.metrics import roc_auc_score

    names = getattr(model, "feature_names_in_", None)
    features = ([str(n) for n in names] if names is not None
                else [c for c in frame.columns if c not in (TARGET, ID)])
    return float(roc_auc_score(frame[TARGET], model.predict_proba(frame[features])[:, 1]))


def oracle_auc(kind: str, weeks: list[int], rows: int, change: int, fresh: pd.DataFrame,
               reference_model: Any) -> float:
    """The same pipeline and estimator as the project's, fitted on every post-change batch."""
    from sklearn.base import clone

    post = pd.concat([generate_week(kind, w, rows, change=change) for w in weeks if w >= change],
                     ignore_index=True)
    model = clone(reference_model)
    features = list(reference_model.feature_names_in_)
    model.fit(post[features], post[TARGET])
    return auc_of(model, fresh)


def run_loop(root: Path, kind: str, *, conveyor: Callable[..., subprocess.CompletedProcess],
             history_weeks: int = 4, weeks: int = 8, change_after: int = 4, rows: int = 1500,
             log: Callable[[str], None] = lambda line: None) -> StreamFigures:
    """The whole loop on one stream: train on the history, then one `watch --once` per week."""
    from conveyor import api
    from conveyor.store import Registry, open_store
    from conveyor_retrain.records import RetrainDecisions

    started = time.perf_counter()
    change = history_weeks + change_after
    write_project(root, kind, history_weeks=history_weeks, rows=rows, change=change,
                  conveyor=conveyor)
    done = conveyor("run", cwd=root)
    assert done.returncode == 0, done.stdout + done.stderr
    first = api.load_model(root, "credit")
    (root / "inbox").mkdir()
    stream = list(range(history_weeks, history_weeks + weeks))
    weekly = []
    for week in stream:
        generate_week(kind, week, rows, change=change).to_csv(
            root / "inbox" / f"week-{week:02d}.csv", index=False)
        done = conveyor("watch", "--inbox", "inbox", "--once", "--json", cwd=root)
        assert done.returncode == 0, done.stdout + done.stderr
        handled = json.loads(done.stdout)
        entry = handled[-1] if handled else {}
        weekly.append({"week": week, "status": entry.get("status"),
                       "outcome": entry.get("outcome"), "error": entry.get("error")})
        log(f"{kind} week {week}: {entry}")
    store = open_store(root)
    try:
        decisions = RetrainDecisions(store).list(model_name="credit")
        champion = Registry(store).alias("credit", "champion")
    finally:
        store.close()
    by_batch = {}
    for decision in decisions:
        by_batch[decision.trigger] = decision
    acted = [d for d in decisions if d.acted]
    trigger_week = {}
    store = open_store(root)
    try:
        from conveyor_monitor.records import Monitoring

        for batch in Monitoring(store).batches(model_name="credit"):
            trigger_week[batch.id] = int(Path(batch.source).stem.split("-")[-1])
    finally:
        store.close()
    acted_weeks = [trigger_week.get(d.trigger) for d in acted]
    promoted_weeks = [trigger_week.get(d.trigger) for d in decisions if d.outcome == "promoted"]
    fresh = fresh_post_change(kind, change, rows)
    final = api.load_model(root, "credit")
    first_after = [w for w in promoted_weeks if w is not None and w >= change]
    return StreamFigures(
        kind=kind, change=change, weeks=stream, final_auc=auc_of(final.model, fresh),
        oracle_auc=oracle_auc(kind, stream, rows, change, fresh, first.model),
        never_retrained_auc=auc_of(first.model, fresh), retrains=len(acted),
        promotions=len(promoted_weeks),
        retrains_before_change=sum(1 for w in acted_weeks if w is not None and w < change),
        batches_until_recovery=(min(first_after) - change + 1) if first_after else None,
        final_champion=champion.version if champion else 0,
        seconds=time.perf_counter() - started, weekly=weekly)


def conveyor_runner(executable: str, env: dict[str, str] | None = None
                    ) -> Callable[..., subprocess.CompletedProcess]:
    def run(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([executable, *args], cwd=cwd, text=True, capture_output=True,
                              timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})

    return run
