"""The saved scoring plans under ``artifacts/cache/``: which plan a version may use, and the champion's Scorer.
A plan is trusted only when its content matches the sha256 in the version's verified record and its model file.

With a trusted plan, scoring starts without pandas, scikit-learn or the model file (``Scorer.from_plan``);
the model is loaded through the registry (``RegistryLoader``) only if a row needs the Pipeline itself.
"""

from __future__ import annotations

import contextlib

from ..core.errors import NoChampionError
from ..core.settings import Settings
from ..registry.versions import (
    Registry,
    RegistryError,
    check_record,
    plan_path,
    sha256_file,
)
from .accelerator import ScoringPlan
from .scorer import Scorer

__all__ = ["RegistryLoader", "champion_scorer", "plan_path", "plan_scorer", "remember_plan"]


class RegistryLoader:
    """Loads one model version through the registry (sha256 and trusted types checked); picklable."""

    def __init__(self, settings: Settings, version: str):
        self.settings, self.version = settings, version

    def __call__(self):
        return Registry(self.settings).load(self.version)


def plan_scorer(settings: Settings, version: str) -> Scorer | None:
    """A version's Scorer from its saved scoring plan, or None when there is no plan that checks out.

    A plan is used only if its content matches the plan sha256 in the version's verified record (range
    checks included) and it was made from the very model file the registry names (its sha256, checked
    again here) with the record's threshold, and only while the version's known.npz checks out too: a
    damaged known set refuses the version whether or not a plan exists (the registry's load says so).
    """
    try:
        reg = Registry(settings)
        record = reg.verified_record(version)
        sha, digest = record.get("model_sha256"), record.get("plan_sha256")
        if not (sha and digest):
            return None
        check_record(record)
        path = plan_path(settings, version, sha)
        plan = ScoringPlan.load(path, model_sha256=sha, digest=digest) if path.exists() else None
        if plan is not None and plan.version == version and plan.threshold == float(record["threshold"]) \
                and plan.known is not None and sha256_file(reg.models_dir / version / "model.skops") == sha:
            reg.known_arrays(version, record)  # raises for a damaged known.npz: the registry's load refuses it
            return Scorer.from_plan(plan, RegistryLoader(settings, version))
    except (RegistryError, OSError, ValueError, KeyError, TypeError):
        return None  # the caller loads the model itself, and that load reports whatever is wrong
    return None


def champion_scorer(settings: Settings) -> Scorer:
    """The champion's Scorer, from its saved scoring plan when there is one (``plan_scorer``), else from the model
    file through the registry. Raises NoChampionError before the first training or when the champion is refused."""
    registry = Registry(settings)
    version = registry.champion()  # a damaged pointer raises its own sentence
    if version is None:
        raise NoChampionError(f"no trained model in {settings.artifacts_dir}; "
                              "run `mushroom train` (or `make all`) first")
    scorer = plan_scorer(settings, version)
    if scorer is not None:
        return scorer
    try:
        return Scorer(registry.load(version))
    except RegistryError as exc:
        raise NoChampionError(f"the champion was refused: {exc} (promote another version with "
                              "`mushroom models promote vNNNN` or run `mushroom train`)") from None


def remember_plan(settings: Settings, scorer: Scorer) -> None:
    """Save the scorer's plan for the next run (best effort; only for a model loaded from the registry)."""
    plan = scorer.plan
    if plan is None or not plan.model_sha256 or scorer.from_saved_plan:
        return
    path = plan_path(settings, plan.version, plan.model_sha256)
    with contextlib.suppress(OSError, RegistryError):
        digest = Registry(settings).verified_record(plan.version).get("plan_sha256")
        if digest and plan.digest() == digest and (
                not path.exists() or ScoringPlan.load(path, model_sha256=plan.model_sha256, digest=digest) is None):
            plan.save(path)  # a missing or damaged plan is replaced by the one the record names
