"""The model registry: versions on disk, metadata, the champion pointer, safe loading.

Layout: ``artifacts/models/vNNNN/{model.skops, metadata.json}`` and ``artifacts/champion.json``.
A version folder is built under a temporary name and renamed into place, so a version either exists
whole or not at all; the champion pointer is replaced atomically and only after its version exists.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from .fileio import atomic_write_json, fsync_dir, read_json
from .settings import Settings

#: The only types (beyond skops' defaults) a model file may contain. Anything else is refused.
TRUSTED_TYPES = frozenset({
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.tree._tree.Tree",
    "sklearn.model_selection._split.StratifiedKFold",
})

VALID_TRIGGERS = ("initial", "feedback", "manual")


class RegistryError(RuntimeError):
    """A version is missing, damaged, tampered with or unsafe to load."""


def _read_json(path: Path):
    """read_json, with a damaged file reported as a RegistryError naming it."""
    try:
        return read_json(path)
    except ValueError as exc:
        raise RegistryError(f"{path} is damaged (not valid JSON: {exc})") from None


def utc_now() -> str:
    """Current UTC time, ISO 8601 with a Z."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def version_name(number: int) -> str:
    return f"v{number:04d}"


def parse_version(name: str) -> int:
    text = str(name).strip().lower()
    if text.startswith("v"):
        text = text[1:]
    if not text.isdigit():
        raise RegistryError(f"{name!r} is not a version name like v0003")
    return int(text)


@dataclass(frozen=True)
class LoadedModel:
    """A verified, loaded model version."""

    version: str
    pipeline: object
    threshold: float
    metadata: dict


class Registry:
    """Versions under ``artifacts/models`` and the champion pointer."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.models_dir = settings.models_dir
        self.champion_path = settings.champion_path

    # ----------------------------------------------------------------- reading
    def versions(self) -> list[str]:
        """All complete versions, oldest first."""
        if not self.models_dir.exists():
            return []
        names = [p.name for p in self.models_dir.iterdir()
                 if p.is_dir() and p.name.startswith("v") and p.name[1:].isdigit()
                 and (p / "metadata.json").exists()]
        return sorted(names, key=parse_version)

    def metadata(self, version: str) -> dict:
        """metadata.json of a version."""
        version = version_name(parse_version(version))
        meta = _read_json(self.models_dir / version / "metadata.json")
        if meta is None:
            raise RegistryError(f"no model version {version} (known: {', '.join(self.versions()) or 'none'})")
        return meta

    def champion(self) -> str | None:
        """The serving version named by champion.json, or None before the first training."""
        data = self.champion_record()
        return data.get("version") if data else None

    def champion_record(self) -> dict | None:
        """champion.json as a dict (None before the first promotion)."""
        fix = "repair it with `mushroom models promote vNNNN`"
        try:
            data = _read_json(self.champion_path)
        except RegistryError as exc:
            raise RegistryError(f"{exc}; {fix}") from None
        if data is not None and not (isinstance(data, dict) and isinstance(data.get("version"), str)):
            raise RegistryError(f"{self.champion_path} names no version; {fix}")
        return data

    def champion_stamp(self) -> tuple | None:
        """A cheap fingerprint of champion.json (changes whenever the pointer is replaced)."""
        try:
            st = os.stat(self.champion_path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self, version: str) -> LoadedModel:
        """Load a version after checking its sha256 and that it holds only trusted types."""
        import skops.io as sio

        meta = self.metadata(version)
        path = self.models_dir / meta["version"] / "model.skops"
        if not path.exists():
            if meta.get("model_dropped"):
                raise RegistryError(f"{meta['version']} was refused and its model file was dropped on "
                                    f"{meta['model_dropped']} (only the newest refused versions keep theirs)")
            raise RegistryError(f"{meta['version']}: model.skops is missing")
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta.get("model_sha256"):
            raise RegistryError(f"{meta['version']}: model.skops does not match the sha256 in metadata.json "
                                "(the file was changed after registration); refusing to load it")
        try:
            untrusted = set(sio.get_untrusted_types(data=data))
        except Exception as exc:  # a corrupt archive
            raise RegistryError(f"{meta['version']}: model.skops cannot be read ({exc})") from None
        unsafe = sorted(untrusted - TRUSTED_TYPES)
        if unsafe:
            raise RegistryError(f"{meta['version']}: model.skops holds untrusted type(s) {', '.join(unsafe)}; "
                                "refusing to load it")
        pipeline = sio.loads(data, trusted=sorted(untrusted))
        return LoadedModel(meta["version"], pipeline, float(meta["threshold"]), meta)

    # ----------------------------------------------------------------- writing
    def _lock(self) -> FileLock:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.settings.artifacts_dir / "registry.lock"))

    def register(self, pipeline, *, threshold: float, trigger: str, params: dict, metrics: dict,
                 training_rows: int, training_sha256: str, parent: str | None, status: str = "candidate",
                 extra: dict | None = None) -> str:
        """Write a new version folder atomically and return its name (not yet champion)."""
        import skops.io as sio

        if trigger not in VALID_TRIGGERS:
            raise ValueError(f"trigger must be one of {VALID_TRIGGERS}")
        blob = sio.dumps(pipeline)
        with self._lock():
            existing = self.versions()
            leftovers = [p for p in self.models_dir.glob(".tmp-*")]
            for p in leftovers:  # half-built versions from a crash
                shutil.rmtree(p, ignore_errors=True)
            number = (parse_version(existing[-1]) + 1) if existing else 1
            name = version_name(number)
            tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.models_dir))
            model_path = tmp / "model.skops"
            with open(model_path, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            meta = {
                "version": name,
                "created_utc": utc_now(),
                "parent": parent,
                "trigger": trigger,
                "status": status,
                "threshold": float(threshold),
                "params": params,
                "training_rows": int(training_rows),
                "training_sha256": training_sha256,
                "model_sha256": hashlib.sha256(blob).hexdigest(),
                "holdout_metrics": metrics,
                **(extra or {}),
            }
            atomic_write_json(tmp / "metadata.json", meta)
            os.rename(tmp, self.models_dir / name)
            fsync_dir(self.models_dir)
        return name

    def set_status(self, version: str, status: str, **fields) -> None:
        """Update a version's status (candidate, champion, rejected, retired) and notes."""
        meta = self.metadata(version)
        meta.update(status=status, **fields)
        atomic_write_json(self.models_dir / meta["version"] / "metadata.json", meta)

    def promote(self, version: str, *, reason: str = "manual") -> str:
        """Make ``version`` the champion (verifies it loads first); returns it."""
        version = version_name(parse_version(version))
        self.load(version)  # refuse to point at a model that cannot serve
        with self._lock():
            try:
                previous = self.champion()
            except RegistryError:  # a damaged pointer is what this promotion repairs
                previous = None
            atomic_write_json(self.champion_path, {"version": version, "previous": previous,
                                                   "promoted_utc": utc_now(), "reason": reason})
        if previous and previous != version:
            try:
                self.set_status(previous, "retired")
            except RegistryError:
                pass
        self.set_status(version, "champion")
        return version

    def rollback(self) -> str:
        """Point the champion back to its parent version."""
        current = self.champion()
        if current is None:
            raise RegistryError("there is no champion to roll back")
        parent = self.metadata(current).get("parent")
        if not parent:
            raise RegistryError(f"{current} has no parent version to roll back to")
        return self.promote(parent, reason=f"rollback from {current}")

    # ----------------------------------------------------------------- growth
    def drop_rejected_models(self, keep: int = 3) -> list[str]:
        """Refused versions keep metadata and reason; only the newest ``keep`` keep their model file (for a
        forced promotion). Returns the versions whose model was dropped."""
        with self._lock():
            rejected = [v for v in self.versions() if self.metadata(v).get("status") == "rejected"
                        and (self.models_dir / v / "model.skops").exists()]
            dropped = rejected[:max(0, len(rejected) - keep)]
            for v in dropped:
                (self.models_dir / v / "model.skops").unlink()
                self.set_status(v, "rejected", model_dropped=utc_now())
        return dropped

    def prune(self, keep: int = 10) -> list[str]:
        """Remove all but the newest ``keep`` versions, never the champion or its parent. Returns the removed."""
        if keep < 1:
            raise ValueError(f"--keep must be at least 1, not {keep}")
        with self._lock():
            versions = self.versions()
            champion = self.champion()
            spare = {champion, self.metadata(champion).get("parent") if champion else None}
            removed = [v for v in versions[:max(0, len(versions) - keep)] if v not in spare]
            for v in removed:
                gone = self.models_dir / f".tmp-prune-{v}"
                os.rename(self.models_dir / v, gone)  # out of versions() at once, then deleted
                shutil.rmtree(gone, ignore_errors=True)
            fsync_dir(self.models_dir)
        return removed
