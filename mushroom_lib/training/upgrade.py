"""Upgrading a home made by an earlier release, as an explicit step every surface runs when it opens a home.

Versions made before records get their record.json, known.npz and scoring plan, once, after their model file's
sha256 checks out; a damaged old metadata.json is refused, never upgraded.
"""

from __future__ import annotations

from ..core.settings import Settings
from ..registry.versions import KNOWN, MUTABLE, LoadedModel, Registry
from ..scoring.accelerator import ScoringPlan
from .train import rebuild_known


def upgrade_home(settings: Settings) -> list[str]:
    """Give every version made before records its record (a stat per version when there is nothing to do).
    Returns the versions upgraded."""
    registry = Registry(settings)
    if not registry.without_record():
        return []
    done = []
    with registry.lock():
        for version in registry.without_record():
            meta, pipeline, _ = registry.load_pipeline(version)
            known, how = rebuild_known(settings, meta)
            record = {k: v for k, v in meta.items() if k not in MUTABLE}
            folder = registry.models_dir / version
            record.update(cutoff=known.cutoff, pure_code_min_count=known.pure_min_count,
                          known_sha256=known.save(folder / KNOWN), known_source=how)
            plan = ScoringPlan.from_pipeline(LoadedModel(version, pipeline, record["threshold"], record, known))
            registry.write_record(version, record, plan=plan)
            done.append(version)
    return done
