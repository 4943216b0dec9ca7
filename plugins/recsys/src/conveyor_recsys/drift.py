"""Drift for recommenders: what a period's events look like against what the model trained on.

`measure(events, loaded, reference, session, section, settings)` returns::

    {"popularity": JS distance, "new_items": share, "new_users": share, "events": n,
     "reference_interactions": n, "features": {name: monitor-style result}, "drifted": bool,
     "reasons": [...]}

* popularity: the Jensen-Shannon distance (base 2: 0 same shares, 1 disjoint) between the share
  of interactions per item in the version's training interactions (the run's `train` output;
  the model's own popularity when the run stored none) and in the period's events, over the
  items the model knows (events on new items are `new_items`). Sampling alone gives a floor
  that falls as events grow (about 0.2 for 2,000 events over 150 items);
* new_items / new_users: the share of the period's events on items, or by users, the model
  never saw in training;
* features: with `recsys.user_features` / `recsys.item_features` (CSV or Parquet tables keyed
  by the user or item column), each feature's distribution over the interactions (one value
  per interaction, through its user or item), training vs the period, tested with the drift
  detector `monitor.drift` names for its kind (psi and chi2 by default) at `monitor.thresholds`;
  too few values on either side (`monitor.min_rows`) gives "insufficient", no verdict.

The period drifted when popularity reaches `feedback.popularity_threshold`, new items or users
reach `feedback.new_items_threshold` / `new_users_threshold`, or a feature drifted.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any

import conveyor
from conveyor import api
from conveyor.feedback import FeedbackSettings

DEFAULT_METHODS = {"numeric": "psi", "categorical": "chi2"}
NUMERIC, CATEGORICAL = "numeric", "categorical"  # conveyor.FeatureDistributions.kind


def measure(events: Any, loaded: Any, reference: Any, session: Any,
            section: Mapping[str, Any], settings: FeedbackSettings) -> dict[str, Any]:
    """The drift figures (see the module); `reference` is the version's training
    interactions (`training_interactions`), or None when its run stored none."""
    import numpy as np
    from scipy.spatial.distance import jensenshannon

    model = loaded.model
    items = events["item_key"]
    users = events["user_key"]
    ref_counts = reference["item"].astype(str).value_counts() if reference is not None \
        else _popularity(model)
    # Over the items the model knows: events on new items are `new_items`, not a shift.
    cur_counts = items.value_counts().reindex(ref_counts.index, fill_value=0)
    p = ref_counts.to_numpy(dtype="float64")
    q = cur_counts.to_numpy(dtype="float64")
    popularity = float(jensenshannon(p / p.sum(), q / q.sum(), base=2)) if p.sum() and q.sum() \
        else None
    known_items = {str(i) for i in model.item_ids.tolist()}
    known_users = {str(u) for u in model.user_ids.tolist()}
    new_items = float((~items.isin(known_items)).mean())
    new_users = float((~users.isin(known_users)).mean())
    reasons = []
    if popularity is not None and popularity >= settings.popularity_threshold:
        reasons.append(f"popularity shift {popularity:.3f} >= "
                       f"feedback.popularity_threshold={settings.popularity_threshold:g}")
    if new_items >= settings.new_items_threshold:
        reasons.append(f"{new_items:.0%} of events on new items >= "
                       f"feedback.new_items_threshold={settings.new_items_threshold:g}")
    if new_users >= settings.new_users_threshold:
        reasons.append(f"{new_users:.0%} of events by new users >= "
                       f"feedback.new_users_threshold={settings.new_users_threshold:g}")
    features: dict[str, Any] = {}
    if reference is not None:
        features = feature_drift(events, reference, session, section)
        drifted = [name for name, entry in features.items() if entry["drifted"]]
        if drifted:
            reasons.append("features drifted: " + ", ".join(drifted))
    return {"popularity": None if popularity is None or np.isnan(popularity) else popularity,
            "new_items": new_items, "new_users": new_users, "events": len(events),
            "reference_interactions": None if reference is None else len(reference),
            "features": features, "drifted": bool(reasons), "reasons": reasons}


def training_interactions(session: Any, loaded: Any) -> Any:
    """The `train` output of the run that trained `loaded` (canonical columns), or None."""
    try:
        return api.load_output(session, loaded.run_id, "train")
    except conveyor.ConveyorError:
        return None


def _popularity(model: Any) -> Any:
    import pandas as pd

    return pd.Series(model.popularity, index=[str(i) for i in model.item_ids.tolist()])


# --- feature drift ----------------------------------------------------------------------------


def feature_tables(session: Any, section: Mapping[str, Any]) -> dict[str, Any]:
    """{"user": frame indexed by user (text), "item": ...} for the configured tables, read by
    `conveyor_recsys.features.keyed_table` (as training reads them: one row per key, no
    missing key; a broken table is a ConfigError naming the setting)."""
    from conveyor_recsys.features import keyed_table

    tables = {}
    for side, key, column in (("user", "user_features", section.get("user_column")),
                              ("item", "item_features", section.get("item_column"))):
        name = section.get(key)
        if not name:
            continue
        frame = keyed_table(Path(session.project_dir), str(name), str(column),
                            setting=f"recsys.{key}", key_setting=f"recsys.{side}_column")
        tables[side] = frame.set_index(frame[column].astype(str)).drop(columns=[column])
    return tables


def feature_drift(events: Any, reference: Any, session: Any,
                  section: Mapping[str, Any]) -> dict[str, Any]:
    tables = feature_tables(session, section)
    if not tables:
        return {}
    config = api.load_config(session).data
    monitor = config.get("monitor") or {}
    methods = {**DEFAULT_METHODS, **(monitor.get("drift") or {})}
    thresholds = monitor.get("thresholds") or {}
    # as configured (0 included); the defaults only when the setting is absent
    min_rows = int(_setting(monitor, "min_rows", 200))
    bins = int(_setting(monitor, "bins", 10))
    detectors = session.host.drift_detectors
    out: dict[str, Any] = {}
    for side, table in tables.items():
        ref_keys = reference[side].astype(str)
        cur_keys = events[f"{side}_key"]
        for feature in table.columns:
            values = table[feature]
            ref = values.reindex(ref_keys).reset_index(drop=True)
            cur = values.reindex(cur_keys).reset_index(drop=True)
            out[f"{side}.{feature}"] = _test(f"{side}.{feature}", ref, cur, methods, thresholds,
                                             min_rows, bins, detectors)
    return out


def _setting(section: Mapping[str, Any], key: str, default: Any) -> Any:
    value = section.get(key)
    return default if value is None else value


def _test(name: str, ref: Any, cur: Any, methods: Mapping[str, str],
          thresholds: Mapping[str, float], min_rows: int, bins: int,
          detectors: Mapping[str, Any]) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(ref) and not pd.api.types.is_bool_dtype(ref)
    kind = NUMERIC if numeric else CATEGORICAL
    method = methods["numeric" if numeric else "categorical"]
    detector = detectors.get(method)
    if detector is None:
        raise conveyor.ConfigError(f"monitor.drift: no drift detector is called '{method}'",
                                   hint="installed: " + ", ".join(sorted(detectors)))
    threshold = float(thresholds.get(method, detector.default_threshold))
    r, c = ref.dropna(), cur.dropna()
    if numeric:
        edges = np.unique(np.quantile(r.to_numpy(dtype="float64"),
                                      np.linspace(0, 1, bins + 1)[1:-1])) if len(r) else \
            np.array([])
        reference = np.bincount(np.searchsorted(edges, r.to_numpy(dtype="float64"),
                                                side="left"), minlength=len(edges) + 1)
        current = np.bincount(np.searchsorted(edges, c.to_numpy(dtype="float64"),
                                              side="left"), minlength=len(edges) + 1)
        labels: tuple[str, ...] = ()
        extra = {"edges": edges, "grid_edges": edges, "grid_reference": reference,
                 "grid_current": current,
                 "grid_error": float(reference.max() / max(reference.sum(), 1))}
        shown = [f"≤ {edges[0]:.4g}"] + [f"({a:.4g}, {b:.4g}]" for a, b in pairwise(edges)] \
            + [f"> {edges[-1]:.4g}"] if len(edges) else ["all"]
    else:
        labels = tuple(dict.fromkeys([*map(str, r.unique()), *map(str, c.unique())]))
        reference = r.astype(str).value_counts().reindex(labels, fill_value=0).to_numpy()
        current = c.astype(str).value_counts().reindex(labels, fill_value=0).to_numpy()
        extra, shown = {}, list(labels)
    dist = conveyor.FeatureDistributions(
        feature=name, kind=kind, reference=reference, current=current, labels=labels,
        reference_missing=int(ref.isna().sum()), current_missing=int(cur.isna().sum()), **extra)
    entry = {"kind": kind, "method": method, "threshold": threshold,
             "p_value": bool(detector.p_value), "rows": int(current.sum()),
             "missing": dist.current_missing, "reference": [int(v) for v in reference],
             "current": [int(v) for v in current], "bins": shown, "score": None,
             "statistic": None, "drifted": False, "insufficient": ""}
    if dist.current_rows < min_rows or dist.reference_rows < min_rows:
        entry["insufficient"] = (f"{dist.current_rows:,} values in the period, "
                                 f"{dist.reference_rows:,} in training "
                                 f"(monitor.min_rows={min_rows})")
        return entry
    verdict = detector.test(dist, threshold)
    score = None if verdict.score is None or verdict.score != verdict.score \
        else float(verdict.score)
    entry.update(score=score, drifted=bool(verdict.drifted) and not verdict.insufficient,
                 insufficient=verdict.insufficient or "")
    return entry
