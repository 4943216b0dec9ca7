"""The reference profile of a model version, and the batch statistics counted against it.

A profile is computed once per model version from its training data and stored in
`.conveyor/monitor/profiles/<model>/v<version>-<key>.npz` (temp file + rename), `key` covering
the profile settings (`monitor.grid`, `bins`, `max_categories`) and the model's sha256. Per
feature it keeps:

* numeric: a grid of reference quantiles (up to `monitor.grid`, all distinct values when there
  are fewer, each edge with its left neighbour `nextafter(edge, -inf)` so a value tied at an
  edge has a bin of its own) with the exact count of reference values <= each edge, and the
  `monitor.bins` quantile bin edges (a subset of the grid). Size: 2 x grid floats and ints
  (~320 KB per feature at grid=10,000). KS on the grid is within `grid_error` (the largest
  reference share strictly between two neighbouring grid edges, <= 1/grid) of the exact
  statistic; PSI's bins are the exact reference quantiles.
* categorical: the counts of the `max_categories` most frequent categories, the rest summed
  as "(other)".

A batch is then counted chunk by chunk (`BatchCounter.add`): per numeric feature, each chunk is
sorted and the grid edges are looked up in it (`searchsorted`), adding the count of values
<= each edge; per categorical feature, its value counts. Memory: one chunk plus the counters
(O(features x grid)), whatever the batch's size.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from conveyor import FeatureDistributions
from conveyor.names import path_part

NUMERIC, CATEGORICAL = "numeric", "categorical"
OTHER = "(other)"
FORMAT = 1  # bump when the stored layout changes: old profiles are then rebuilt
PROFILE_DIR = Path(".conveyor") / "monitor" / "profiles"
NEW_EXAMPLES = 10


@dataclass
class FeatureProfile:
    name: str
    kind: str
    rows: int  # non-missing reference values
    missing: int
    # numeric
    edges: np.ndarray | None = None  # grid edges, sorted, distinct
    cum: np.ndarray | None = None  # reference count <= each grid edge
    bin_positions: np.ndarray | None = None  # indices into edges of the quantile bin edges
    grid_error: float = 0.0
    dtype: str = ""  # the reference column's dtype: batches are read with the same types
    # categorical
    labels: list[str] = field(default_factory=list)
    counts: np.ndarray | None = None

    @property
    def bin_edges(self) -> np.ndarray:
        return self.edges[self.bin_positions]

    def grid_counts(self) -> np.ndarray:
        return counts_from_cum(self.cum, self.rows)

    def bin_counts(self) -> np.ndarray:
        return counts_from_cum(self.cum[self.bin_positions], self.rows)


def counts_from_cum(cum: np.ndarray, total: int) -> np.ndarray:
    """Counts per bin from counts <= each edge: bins (-inf, e0], (e0, e1], ..., (e_last, inf)."""
    return np.diff(np.concatenate(([0], cum, [total]))).astype(np.int64)


def kind_of(series: Any) -> str:
    import pandas as pd

    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
        return CATEGORICAL
    return NUMERIC


def numeric_values(series: Any) -> np.ndarray:
    """A column as float64, missing values (and anything not a number) as NaN."""
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce")
    return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan))


def numeric_profile(name: str, series: Any, *, grid: int, bins: int) -> FeatureProfile:
    values = numeric_values(series)
    present = values[~np.isnan(values)]
    present.sort()
    n = len(present)
    missing = len(values) - n
    if n == 0:
        empty = np.empty(0)
        return FeatureProfile(name, NUMERIC, 0, missing, edges=empty,
                              cum=np.empty(0, dtype=np.int64),
                              bin_positions=np.empty(0, dtype=np.int64))
    bin_edges = np.unique(np.quantile(present, np.arange(1, bins) / bins))
    distinct = np.unique(present)
    # Few distinct values: every one is an edge, and KS on the grid is exact.
    base = distinct if len(distinct) <= grid else \
        np.unique(np.quantile(present, np.arange(1, grid) / grid))
    base = np.union1d(base, bin_edges)
    edges = np.union1d(base, np.nextafter(base, -np.inf))
    cum = np.searchsorted(present, edges, side="right").astype(np.int64)
    counts = counts_from_cum(cum, n)
    # A bin holding one value only (between an edge and its left neighbour) is no error;
    # any other bin's reference share bounds how far KS on the grid can be from exact.
    lower = np.concatenate(([-np.inf], edges))
    upper = np.concatenate((edges, [np.inf]))
    point = np.nextafter(upper, -np.inf) == lower
    grid_error = float(counts[~point].max() / n) if (~point).any() else 0.0
    positions = np.searchsorted(edges, bin_edges)
    return FeatureProfile(name, NUMERIC, n, missing, edges=edges, cum=cum,
                          bin_positions=positions.astype(np.int64), grid_error=grid_error)


def category_strings(series: Any) -> Any:
    return series.dropna().astype(str)


def categorical_profile(name: str, series: Any, *, max_categories: int) -> FeatureProfile:
    present = category_strings(series)
    counts = present.value_counts()
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    kept = ordered[:max_categories]
    other = sum(count for _, count in ordered[max_categories:])
    labels = [str(label) for label, _ in kept] + [OTHER]
    values = np.array([count for _, count in kept] + [other], dtype=np.int64)
    return FeatureProfile(name, CATEGORICAL, len(present), len(series) - len(present),
                          labels=labels, counts=values)


def profile_column(name: str, series: Any, settings: Any, kind: str | None = None
                   ) -> FeatureProfile:
    kind = kind or kind_of(series)
    if kind == NUMERIC:
        made = numeric_profile(name, series, grid=settings.grid, bins=settings.bins)
    else:
        made = categorical_profile(name, series, max_categories=settings.max_categories)
    made.dtype = str(series.dtype)
    return made


@dataclass
class Profile:
    """A model version's reference: its features' profiles and its predictions' profiles."""

    model: str
    version: int | None
    rows: int
    source: str
    features: dict[str, FeatureProfile]
    predictions: dict[str, FeatureProfile] = field(default_factory=dict)
    key: str = ""

    def all(self) -> dict[str, FeatureProfile]:
        return {**self.features, **self.predictions}


def profile_key(model_sha256: str, settings: Any) -> str:
    text = json.dumps([FORMAT, model_sha256, settings.grid, settings.bins, settings.max_categories])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def profile_path(project_dir: Path, model: str, version: int | None, key: str) -> Path:
    # The model's name was checked where it entered (config, registry); path_part applies
    # conveyor.names' rule again, so a name from a hand-edited store cannot leave the folder.
    return path_part(Path(project_dir) / PROFILE_DIR, model, "model name") / f"v{version}-{key}.npz"


def save(profile: Profile, path: Path) -> None:
    """Write the profile whole or not at all (temp file in the same folder, then rename)."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {"format": FORMAT, "model": profile.model, "version": profile.version,
                            "rows": profile.rows, "source": profile.source, "key": profile.key,
                            "features": [], "predictions": []}
    for group in ("features", "predictions"):
        for index, item in enumerate(getattr(profile, group).values()):
            tag = f"{group}{index}"
            meta[group].append({"name": item.name, "kind": item.kind, "rows": item.rows,
                                "missing": item.missing, "grid_error": item.grid_error,
                                "dtype": item.dtype,
                                "labels": item.labels, "tag": tag})
            for attr in ("edges", "cum", "bin_positions", "counts"):
                value = getattr(item, attr)
                if value is not None:
                    arrays[f"{tag}.{attr}"] = value
    arrays["meta"] = np.array(json.dumps(meta))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load(path: Path) -> Profile | None:
    """The stored profile, or None when there is none (or it is unreadable: rebuilt then)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                return None
            groups: dict[str, dict[str, FeatureProfile]] = {}
            for group in ("features", "predictions"):
                groups[group] = {}
                for item in meta[group]:
                    tag = item["tag"]
                    arrays = {attr: data[f"{tag}.{attr}"] for attr in
                              ("edges", "cum", "bin_positions", "counts")
                              if f"{tag}.{attr}" in data.files}
                    groups[group][item["name"]] = FeatureProfile(
                        item["name"], item["kind"], item["rows"], item["missing"],
                        grid_error=item["grid_error"], dtype=item.get("dtype", ""),
                        labels=list(item["labels"]), **arrays)
    except (OSError, ValueError, KeyError):
        return None
    return Profile(meta["model"], meta["version"], meta["rows"], meta["source"],
                   groups["features"], groups["predictions"], key=meta["key"])


# --- counting a batch ---------------------------------------------------------------------------


@dataclass
class Counter:
    profile: FeatureProfile
    rows: int = 0
    missing: int = 0
    cum: np.ndarray | None = None
    counts: np.ndarray | None = None
    unseen: dict[str, int] = field(default_factory=dict)  # categories not in the reference


class BatchCounter:
    """Counts a batch against a profile, one chunk at a time."""

    def __init__(self, profiles: dict[str, FeatureProfile]) -> None:
        self.counters: dict[str, Counter] = {}
        for name, profile in profiles.items():
            counter = Counter(profile)
            if profile.kind == NUMERIC:
                counter.cum = np.zeros(len(profile.edges), dtype=np.int64)
            else:
                counter.counts = np.zeros(len(profile.labels), dtype=np.int64)
            self.counters[name] = counter
        self._index = {name: {label: i for i, label in enumerate(c.profile.labels)}
                       for name, c in self.counters.items() if c.profile.kind == CATEGORICAL}

    def add(self, name: str, series: Any) -> None:
        counter = self.counters[name]
        if counter.profile.kind == NUMERIC:
            self.add_numeric(name, numeric_values(series))
            return
        present = category_strings(series)
        counter.rows += len(present)
        counter.missing += len(series) - len(present)
        index = self._index[name]
        other = len(counter.profile.labels) - 1
        for label, count in present.value_counts().items():
            position = index.get(label)
            if position is None or position == other:
                position = other
                if label not in index and (len(counter.unseen) < NEW_EXAMPLES
                                           or label in counter.unseen):
                    counter.unseen[label] = counter.unseen.get(label, 0) + int(count)
            counter.counts[position] += int(count)

    def add_numeric(self, name: str, values: np.ndarray) -> None:
        counter = self.counters[name]
        present = values[~np.isnan(values)]
        counter.missing += len(values) - len(present)
        counter.rows += len(present)
        if len(present) and len(counter.profile.edges):
            present.sort()
            counter.cum += np.searchsorted(present, counter.profile.edges, side="right")

    def distributions(self, name: str) -> FeatureDistributions:
        counter = self.counters[name]
        profile = counter.profile
        if profile.kind == NUMERIC:
            positions = profile.bin_positions
            return FeatureDistributions(
                feature=name, kind=NUMERIC,
                reference=profile.bin_counts(), current=counts_from_cum(
                    counter.cum[positions], counter.rows),
                edges=profile.bin_edges, grid_edges=profile.edges,
                grid_reference=profile.grid_counts(),
                grid_current=counts_from_cum(counter.cum, counter.rows),
                grid_error=profile.grid_error, reference_missing=profile.missing,
                current_missing=counter.missing)
        return FeatureDistributions(
            feature=name, kind=CATEGORICAL, reference=profile.counts, current=counter.counts,
            labels=tuple(profile.labels), reference_missing=profile.missing,
            current_missing=counter.missing)
