"""What every benchmark needs: the real dataset's path and a home with the default model trained."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def dataset_path(who: str = "benchmark") -> Path:
    """MUSHROOM_DATA, else ../shared/data/mushrooms.csv; exits with a sentence when neither exists."""
    for candidate in (os.environ.get("MUSHROOM_DATA"), ROOT.parent / "shared" / "data" / "mushrooms.csv"):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    raise SystemExit(f"{who}: the real dataset is missing; set MUSHROOM_DATA to mushrooms.csv")


def trained_home(folder: Path, data: Path, **overrides) -> Path:
    """folder/home with the real data acquired and v0001 trained (no background reports)."""
    from mushroom_lib.core.settings import get_settings
    from mushroom_lib.data.dataset import acquire
    from mushroom_lib.training.train import train

    home = folder / "home"
    settings = get_settings(home, report_on_promote=False, **overrides)
    acquire(settings, str(data), progress=False)
    train(settings)
    return home
