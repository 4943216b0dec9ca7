"""The built-in drift detectors, contributed through `conveyor_drift_detectors` like anyone's.

All of them work on counts (`conveyor.FeatureDistributions`), never on raw rows, so a batch of
any size costs the same once it is counted.

* psi: population stability index over the reference's quantile bins (numeric) or the
  categories; drift when >= threshold (0.2 by convention: 0.1-0.2 moderate, > 0.2 major).
* ks: two-sample Kolmogorov-Smirnov on the distribution functions over the reference's fine
  quantile grid; the p-value is Smirnov's asymptotic one, the formula scipy's `ks_2samp` uses
  for large samples (`kstwo.sf(D, round(n*m/(n+m)))`); drift when p < threshold.
* chi2: chi-square test of homogeneity of the reference's and the batch's counts (categories,
  or numeric quantile bins); drift when p < threshold.
* js: Jensen-Shannon distance (base 2, so in [0, 1]) between the two distributions over the
  same bins; drift when >= threshold.
"""

from __future__ import annotations

from typing import Any

from conveyor import DriftDetector, DriftResult, FeatureDistributions

# Empty bins get this share instead of 0 so that PSI's logarithm stays finite (a common choice).
PSI_FLOOR = 1e-4


def _shares(counts: Any) -> Any:
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total else counts


def psi_value(reference: Any, current: Any) -> float:
    import numpy as np

    expected = np.maximum(_shares(reference), PSI_FLOOR)
    actual = np.maximum(_shares(current), PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _psi(dist: FeatureDistributions, threshold: float) -> DriftResult:
    score = psi_value(dist.reference, dist.current)
    return DriftResult(score=score, drifted=score >= threshold)


def ks_statistic(grid_reference: Any, grid_current: Any) -> float:
    """The largest gap between the two distribution functions at the grid's edges."""
    import numpy as np

    ref = np.cumsum(grid_reference, dtype=np.float64)[:-1] / max(np.sum(grid_reference), 1)
    cur = np.cumsum(grid_current, dtype=np.float64)[:-1] / max(np.sum(grid_current), 1)
    return float(np.max(np.abs(ref - cur))) if len(ref) else 0.0


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    from scipy.stats import kstwo

    big, small = max(n, m), min(n, m)
    effective = round(big * small / (big + small))
    return float(kstwo.sf(statistic, max(effective, 1)))


def _ks(dist: FeatureDistributions, threshold: float) -> DriftResult:
    statistic = ks_statistic(dist.grid_reference, dist.grid_current)
    p = ks_pvalue(statistic, dist.reference_rows, dist.current_rows)
    return DriftResult(score=p, drifted=p < threshold, statistic=statistic,
                       details={"grid_error": dist.grid_error})


def _chi2(dist: FeatureDistributions, threshold: float) -> DriftResult:
    import numpy as np
    from scipy.stats import chi2_contingency

    table = np.vstack([np.asarray(dist.reference), np.asarray(dist.current)]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        # One category on both sides: the two distributions are the same.
        return DriftResult(score=1.0, drifted=False, statistic=0.0)
    result = chi2_contingency(table, correction=False)
    p = float(result.pvalue)
    return DriftResult(score=p, drifted=p < threshold, statistic=float(result.statistic))


def _js(dist: FeatureDistributions, threshold: float) -> DriftResult:
    from scipy.spatial.distance import jensenshannon

    score = float(jensenshannon(_shares(dist.reference), _shares(dist.current), base=2))
    return DriftResult(score=score, drifted=score >= threshold)


NUMERIC, CATEGORICAL = "numeric", "categorical"
BOTH = frozenset({NUMERIC, CATEGORICAL})

BUILT_IN = [
    DriftDetector("psi", BOTH, _psi, 0.2,
                  description="population stability index over reference quantile bins"),
    DriftDetector("ks", frozenset({NUMERIC}), _ks, 0.05, p_value=True,
                  description="two-sample Kolmogorov-Smirnov test (p-value)"),
    DriftDetector("chi2", BOTH, _chi2, 0.05, p_value=True,
                  description="chi-square test of homogeneity (p-value)"),
    DriftDetector("js", BOTH, _js, 0.1,
                  description="Jensen-Shannon distance (base 2)"),
]
