"""Drift policy: which test per batch size, when a batch is too small to judge, and Evidently's import.

Used by the report (``report.py``), by ``drift_check`` (tests) and by ``benchmarks/drift_rates.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

import numpy as np
import pandas as pd

from ..data.schema import FEATURES

#: Fewer production rows than this: no drift verdict at all (no column flagged, no drift metric in the
#: snapshot, so the dashboard shows a gap). Chosen from benchmarks/drift_rates.py (20 draws per cell):
#: with the old policy, 1-20 reference rows had a column named drifted in 60-65% of draws; with this
#: policy a one-habitat batch (woods, paths) has the habitat column named in 100% of draws from 30 rows
#: on and reference samples in 0-10%; below 30 rows neither side of that trade is reliable.
MIN_DRIFT_ROWS = 30
#: Below this many production rows the drift tests are p-value tests (chi-square / K-S), from here on
#: Evidently's distance tests (Jensen-Shannon / normed Wasserstein at 0.1). Evidently makes the same
#: switch but on the *reference* size, which calls small samples drifted (see ``drift_options``).
LARGE_SAMPLE = 1000
P_VALUE = 0.05          #: family-wise significance level of the small-sample tests (Bonferroni over columns)
DISTANCE = 0.1          #: per-column threshold of the large-sample distance tests
DRIFT_SHARE = 0.3       #: the dataset counts as drifted when at least this share of columns drifts


from ..core.errors import MonitoringError  # noqa: E402,F401 (defined in errors.py; kept importable here)


@contextlib.contextmanager
def quiet_imports():
    """Silence the DeprecationWarnings Evidently's import raises (numpy.core, litestar), nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*numpy\.core", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"litestar(\.|$)")
        yield


CAT_TEST = "chisquare_mc"  #: the categorical small-sample test (registered with Evidently by load_evidently)
MC_DRAWS = 4000            #: Monte Carlo draws per column: p-values resolve down to 1/4001


def chisquare_mc(reference: pd.Series, current: pd.Series) -> float:
    """Chi-square p-value of ``current`` against the reference's code shares, by Monte Carlo (exact in law).

    scipy's chi-square p-value assumes >= 5 expected rows per code; with 30-100 production rows most codes
    of a column expect less than 1, and one row of a 0.1% code reads as p ~ 1e-7 (reference samples had
    columns named drifted in most draws). Here the statistic is compared with its distribution over
    ``MC_DRAWS`` multinomial samples of the same size from the reference shares (+0.5 per code, so a
    code absent from the reference is rare, not impossible). Deterministic (fixed seed).
    """
    codes = sorted(set(reference.dropna().astype(str)) | set(current.dropna().astype(str)))
    ref = reference.dropna().astype(str).value_counts().reindex(codes, fill_value=0).to_numpy(float) + 0.5
    cur = current.dropna().astype(str).value_counts().reindex(codes, fill_value=0).to_numpy(float)
    n = int(cur.sum())
    if n == 0 or len(codes) < 2:
        return 1.0
    expected = n * ref / ref.sum()
    observed = ((cur - expected) ** 2 / expected).sum()
    draws = np.random.default_rng(20240601).multinomial(n, ref / ref.sum(), size=MC_DRAWS)
    simulated = ((draws - expected) ** 2 / expected).sum(axis=1)
    return float((1 + np.count_nonzero(simulated >= observed - 1e-9)) / (MC_DRAWS + 1))


def _register_chisquare_mc() -> None:
    # lazy (Evidently, ~2 s): only load_evidently calls this
    from evidently.legacy.calculations.stattests.registry import (
        StatTest,
        _registered_stat_tests,
        register_stattest,
    )
    from evidently.legacy.core import ColumnType

    if CAT_TEST in _registered_stat_tests:
        return

    def impl(reference_data, current_data, feature_type, threshold):
        p_value = chisquare_mc(reference_data, current_data)
        return p_value, p_value < threshold

    register_stattest(StatTest(name=CAT_TEST, display_name="chi-square p_value (Monte Carlo)",
                               allowed_feature_types=[ColumnType.Categorical]), default_impl=impl)


def load_evidently():
    """Import Evidently once, on the monitoring path only, with telemetry off; registers ``CAT_TEST``."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    with quiet_imports():  # lazy: the one place Evidently is first imported (~2 s), on the monitoring path only
        import evidently  # noqa: F401
        from evidently.ui.workspace import Workspace  # noqa: F401

        _register_chisquare_mc()
    return sys.modules["evidently"]


def too_few_rows(n: int) -> str | None:
    """The sentence the report shows instead of a drift verdict, or None when ``n`` rows can be judged."""
    if n >= MIN_DRIFT_ROWS:
        return None
    return (f"too few production rows to judge drift (n = {n}; at least {MIN_DRIFT_ROWS} needed): "
            "no column is flagged")


def drift_options(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str]) -> tuple[dict, str]:
    """Drift tests for ``current`` against ``reference``, chosen by the current sample size.

    Evidently picks its tests by the *reference* size: over 1000 reference rows it uses Jensen-Shannon /
    normed Wasserstein distances at 0.1, whose sampling noise alone exceeds 0.1 for small batches. A
    distance needs a large sample; a p-value test accounts for the sample size. So below
    ``LARGE_SAMPLE`` production rows: chi-square on the categorical features and Kolmogorov-Smirnov on
    the PCA components, each column at p < ``P_VALUE`` / number of columns (Bonferroni: with 25
    columns at p < 0.05 each, a batch of reference rows had a column named drifted in most draws);
    from ``LARGE_SAMPLE`` rows on: Evidently's distance tests, where p-values would flag tiny, harmless
    shifts. The dataset counts as drifted when at least ``DRIFT_SHARE`` of the columns drift. Under
    ``MIN_DRIFT_ROWS`` the report asks for no verdict at all (``too_few_rows``). Rates before and after:
    benchmarks/drift_rates.py; tests/test_monitoring.py checks both sides.

    One test per column type (not per column) keeps the metric's configuration the same from run to
    run, so the dashboard draws one line per regime. Returns (keyword arguments for DataDriftPreset /
    DriftedColumnsCount, a description).
    """
    n = len(current)
    if n < LARGE_SAMPLE:
        level = P_VALUE / max(1, len(columns))
        options = {"cat_method": CAT_TEST, "num_method": "ks", "cat_threshold": level, "num_threshold": level}
        text = (f"{n} production rows (< {LARGE_SAMPLE}): chi-square (Monte Carlo) on the features and K-S "
                f"on the PCA components, p < {P_VALUE}/{len(columns)} = {level:.4f} per column")
    else:
        options = {"cat_method": "jensenshannon", "num_method": "wasserstein", "cat_threshold": DISTANCE,
                   "num_threshold": DISTANCE}
        text = (f"{n} production rows (>= {LARGE_SAMPLE}): Jensen-Shannon distance on the features and "
                f"normed Wasserstein distance on the PCA components, >= {DISTANCE} per column")
    text += f"; dataset drift when >= {DRIFT_SHARE:.0%} of {len(columns)} columns drift"
    return {"columns": list(columns), "drift_share": DRIFT_SHARE, **options}, text


def judge_drift(scores: dict[str, float], n: int) -> dict | None:
    """The report's verdict from per-column scores (``column_scores``) of an ``n``-row batch.

    None under ``MIN_DRIFT_ROWS`` rows; else {count, share, columns, drifted, dataset_drift} with the
    thresholds of ``drift_options`` (p-value below the Bonferroni level, or distance at/above 0.1).
    """
    if too_few_rows(n):
        return None
    if n < LARGE_SAMPLE:
        level = P_VALUE / max(1, len(scores))
        drifted = [c for c, v in scores.items() if v < level]
    else:
        drifted = [c for c, v in scores.items() if v >= DISTANCE]
    share = len(drifted) / len(scores) if scores else 0.0
    return {"count": len(drifted), "share": share, "columns": len(scores), "drifted": drifted,
            "dataset_drift": share >= DRIFT_SHARE}


def drift_columns(reference: pd.DataFrame) -> list[str]:
    """The columns the report tests: the 22 features and the pca_* columns present."""
    return [c for c in reference.columns if c in FEATURES or c.startswith("pca_")]


def column_scores(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str] | None = None, *,
                  cat_method: str | None = None) -> dict[str, float]:
    """Per-column drift score (p-value under LARGE_SAMPLE rows, distance from there), one column at a time
    through the same Evidently stat-test functions the report's DataDriftPreset calls (no Report around
    them: milliseconds, not a second). ``cat_method`` overrides the categorical test (benchmarks)."""
    load_evidently()  # lazy imports below: Evidently, loaded (quietly, telemetry off) by load_evidently
    from evidently.legacy.calculations.stattests.registry import get_stattest
    from evidently.legacy.core import ColumnType

    columns = columns or drift_columns(reference)
    options, _ = drift_options(reference, current, columns)
    scores = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy on codes absent from the reference
        for col in columns:
            kind, method = ((ColumnType.Categorical, cat_method or options["cat_method"]) if col in FEATURES
                            else (ColumnType.Numerical, options["num_method"]))
            ref, cur = reference[col].reset_index(drop=True), current[col].reset_index(drop=True)
            test = get_stattest(ref, cur, kind, method)
            scores[col] = float(test(ref, cur, kind, 0.05).drift_score)
    return scores


def drift_check(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str] | None = None) -> dict:
    """Dataset-level drift of ``current`` against ``reference`` with the report's tests, without HTML.

    Both frames hold the 22 features and, optionally, pca_* columns (``score_frame``); the verdict is
    ``judge_drift`` over ``column_scores`` (the report's tests and thresholds). Returns
    {rows, count, share, columns, drifted, dataset_drift, judged}; ``judged`` is False (and nothing
    drifts) under ``MIN_DRIFT_ROWS`` rows.
    """
    columns = columns or drift_columns(reference)
    if too_few_rows(len(current)):
        return {"rows": len(current), "count": 0, "share": None, "columns": len(columns), "drifted": [],
                "dataset_drift": False, "judged": False}
    verdict = judge_drift(column_scores(reference, current, columns), len(current))
    return {"rows": len(current), **verdict, "judged": True}
