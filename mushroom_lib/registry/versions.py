"""The model registry: versions on disk, their immutable records, the champion pointer, safe loading.

Layout: ``artifacts/models/vNNNN/{model.skops, known.npz, record.json, metadata.json}`` and
``artifacts/champion.json``. ``record.json`` is written once at registration (threshold, cutoff, holdout
metrics, the sha256 of the model file, the known set and the scoring plan) and checked whenever the version
loads; ``metadata.json`` holds only what changes (status, reason) plus the record's sha256. A version folder
is built under a temporary name and renamed into place, so a version exists whole or not at all; the
champion pointer is replaced atomically and only after its version exists.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from ..core.fileio import atomic_write_json, fsync_dir, read_json
from ..core.settings import Settings
from ..core.vocab import utc_iso

#: The only types (beyond skops' defaults) a model file may contain. Anything else is refused.
TRUSTED_TYPES = frozenset({
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.tree._tree.Tree",
    "sklearn.model_selection._split.StratifiedKFold",
})

VALID_TRIGGERS = ("initial", "feedback", "manual")
RECORD = "record.json"
KNOWN = "known.npz"
#: fields of metadata.json that may change after registration; every other field lives in record.json
MUTABLE = ("status", "reason", "record_sha256", "upgraded_utc")


from ..core.errors import RegistryError, shorten  # noqa: E402,F401 (defined in errors.py; kept importable here)


def _read_json(path: Path):
    """read_json, with a damaged file reported as a RegistryError naming it."""
    try:
        return read_json(path)
    except ValueError as exc:
        raise RegistryError(f"{path} is damaged (not valid JSON: {exc})") from None


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
    if not (text.isascii() and text.isdigit()) or len(text) > 9:  # no int() of a 5,000-digit name
        raise RegistryError(f"{shorten(name)} is not a version name like v0003")
    return int(text)


@dataclass(frozen=True)
class LoadedModel:
    """A verified, loaded model version (``known``: its KnownSet, None only for models built by hand)."""

    version: str
    pipeline: object
    threshold: float
    metadata: dict
    known: object = None


def plan_path(settings: Settings, version: str, model_sha256: str) -> Path:
    """Where the scoring plan of a model version is kept (``artifacts/cache``; checked against the record)."""
    return settings.artifacts_dir / "cache" / f"scoring-{version}-{model_sha256[:16]}.npz"


def record_sha256(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def check_record(record: dict) -> None:
    """Range checks of a version record; raises RegistryError naming the version, the field and the value."""
    name = record.get("version", "a version")

    def bad(field_name: str, rule: str) -> RegistryError:
        value = str(record.get(field_name))[:40]
        return RegistryError(f"{name}: its record holds {field_name}={value}, which is not {rule}; "
                             "the record was changed after registration, refusing to load it")

    t = record.get("threshold")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or not 0 < t <= 0.5:
        raise bad("threshold", "a finite number with 0 < threshold <= 0.5")
    c = record.get("cutoff")
    if not isinstance(c, int) or isinstance(c, bool) or not 1 <= c <= 22:
        raise bad("cutoff", "a whole number from 1 to 22")
    for key, value in (record.get("holdout_metrics") or {}).items():
        if key in ("accuracy", "precision", "recall", "f1", "brier") and not (
                isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1):
            raise bad("holdout_metrics", f"a set of finite shares ({key}={value})")
        if key in ("false_edible", "false_poisonous", "n") and not (isinstance(value, int) and value >= 0):
            raise bad("holdout_metrics", f"a set of counts >= 0 ({key}={value})")
    m = record.get("pure_code_min_count", 1)
    if not isinstance(m, int) or isinstance(m, bool) or not 1 <= m <= 10 ** 6:
        raise bad("pure_code_min_count", "a whole number from 1 to 1000000")
    for key in ("model_sha256", "known_sha256"):
        if not isinstance(record.get(key), str) or len(record[key]) != 64:
            raise bad(key, "a sha256")


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
        """A version's record merged with its changing fields (the record wins; not range-checked here)."""
        version = version_name(parse_version(version))
        meta = _read_json(self.models_dir / version / "metadata.json")
        if meta is None:
            raise RegistryError(f"no model version {version} (known: {', '.join(self.versions()) or 'none'})")
        record = self.record(version)
        if record is None:  # a home made before records: metadata.json holds everything until upgraded
            return meta
        return {**meta, **{k: v for k, v in record.items() if k not in MUTABLE}}

    def record(self, version: str) -> dict | None:
        """record.json of a version (None for a version made before records existed)."""
        return _read_json(self.models_dir / version_name(parse_version(version)) / RECORD)

    def verified_record(self, version: str, model_sha256: str | None = None) -> dict:
        """The record, checked: its sha256 against metadata.json, its ranges, the model file's sha256."""
        version = version_name(parse_version(version))
        record = self.record(version)
        if record is None:
            raise RegistryError(f"{version}: record.json is missing")
        check_record(record)  # first: it names the field and value that are out of range
        meta = _read_json(self.models_dir / version / "metadata.json") or {}
        if meta.get("record_sha256") != record_sha256(record):
            raise RegistryError(f"{version}: record.json does not match the sha256 in metadata.json (the record "
                                "was changed after registration); refusing to load it")
        if model_sha256 is not None and record["model_sha256"] != model_sha256:
            raise RegistryError(f"{version}: model.skops does not match the sha256 in its record; refusing to load it")
        return record

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

    def load_pipeline(self, version: str) -> tuple[dict, object, str]:
        """(metadata, pipeline, model sha256) of a version whose model file matches its sha256 and holds only
        trusted types; its record is not checked here (``load`` does that)."""
        import skops.io as sio  # lazy: skops walks scikit-learn at import (~1 s); reading records needs neither

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
        except Exception as exc:  # noqa: BLE001 (skops raises anything on a corrupt archive; named in the message)
            raise RegistryError(f"{meta['version']}: model.skops cannot be read ({exc})") from None
        unsafe = sorted(untrusted - TRUSTED_TYPES)
        if unsafe:
            raise RegistryError(f"{meta['version']}: model.skops holds untrusted type(s) {', '.join(unsafe)}; "
                                "refusing to load it")
        return meta, sio.loads(data, trusted=sorted(untrusted)), digest

    def load(self, version: str) -> LoadedModel:
        """Load a version after checking its record, its model file's sha256, that it holds only trusted
        types and its known set. A version made before records is refused until the home is upgraded
        (``training.upgrade.upgrade_home``, run by every surface when it opens a home)."""
        from ..model.known import (
            KnownSet,  # lazy: numpy; `mushroom models`, jobs and runner read records only
        )

        meta, pipeline, digest = self.load_pipeline(version)
        if self.record(meta["version"]) is None:
            raise RegistryError(f"{meta['version']} was made before version records and has not been upgraded "
                                "yet; any `mushroom` command or a ModelService upgrades it")
        record = self.verified_record(meta["version"], digest)
        known = KnownSet.from_arrays(self.known_arrays(meta["version"], record))
        return LoadedModel(meta["version"], pipeline, float(record["threshold"]), self.metadata(meta["version"]),
                           known)

    def known_arrays(self, version: str, record: dict) -> dict:
        """The arrays of a version's known.npz (its known set and per-version rule tables), exactly the ones its
        record names; a truncated, unreadable or changed file refuses the version like a tampered model file."""
        from ..model.known import load_verified  # lazy: see load

        path = self.models_dir / version / KNOWN
        if not path.exists():
            raise RegistryError(f"{version}: {KNOWN} is missing")
        try:
            return load_verified(path, record["known_sha256"], record["cutoff"], record.get("pure_code_min_count"))
        except ValueError:
            raise RegistryError(f"{version}: {KNOWN} does not match the sha256 in its record (the file was "
                                "changed after registration); refusing to load it") from None

    def without_record(self) -> list[str]:
        """Versions made before records existed (they need ``training.upgrade.upgrade_home``); a stat per version."""
        return [v for v in self.versions() if not (self.models_dir / v / RECORD).exists()]

    def write_record(self, version: str, record: dict, plan=None) -> None:
        """Give a version made before records its record.json (the upgrade step); ``plan``: see ``register``."""
        version = version_name(parse_version(version))
        folder = self.models_dir / version
        meta = _read_json(folder / "metadata.json") or {}
        check_record(record)  # a damaged old metadata.json is refused, not upgraded
        record["plan_sha256"] = self._save_plan(plan, version, record["model_sha256"])
        atomic_write_json(folder / RECORD, record)
        mutable = {k: meta[k] for k in MUTABLE if k in meta}
        atomic_write_json(folder / "metadata.json", {"version": version, **mutable,
                                                      "record_sha256": record_sha256(record),
                                                      "upgraded_utc": utc_iso()})

    def _save_plan(self, plan, version: str, model_sha256: str) -> str | None:
        """Save a scoring plan (any object with ``save(path) -> digest``) under artifacts/cache; its digest."""
        if plan is None:
            return None
        path = plan_path(self.settings, version, model_sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        return plan.save(path)

    def lock(self) -> FileLock:
        """The registry's lock (registration, promotion, pruning, upgrades)."""
        return self._lock()

    # ----------------------------------------------------------------- writing
    def _lock(self) -> FileLock:
        self.models_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.settings.artifacts_dir / "registry.lock"))

    def register(self, pipeline, *, threshold: float, trigger: str, params: dict, metrics: dict,
                 training_rows: int, training_sha256: str, parent: str | None, status: str = "candidate",
                 extra: dict | None = None, known=None, reason: str | None = None, plan_for=None) -> str:
        """Write a new version folder atomically and return its name (not yet champion).

        Writes model.skops, known.npz (``known``: the KnownSet), the immutable record.json and metadata.json,
        and the scoring plan under artifacts/cache, so the first ``mushroom predict`` finds it: ``plan_for``
        (LoadedModel -> a plan with ``save(path) -> digest``, or None) is the scoring stage's, passed in by the
        caller so that the registry stores without importing scoring.
        """
        if known is None:
            raise ValueError("register() needs the version's known set")
        import skops.io as sio  # lazy: see load

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
            record = {
                **(extra or {}),
                "version": name,
                "created_utc": utc_iso(),
                "parent": parent,
                "trigger": trigger,
                "threshold": float(threshold),
                "cutoff": int(known.cutoff),
                "pure_code_min_count": int(known.pure_min_count),
                "params": params,
                "training_rows": int(training_rows),
                "training_sha256": training_sha256,
                "model_sha256": hashlib.sha256(blob).hexdigest(),
                "known_sha256": known.save(tmp / KNOWN),
                "holdout_metrics": metrics,
            }
            check_record(record)
            plan = plan_for(LoadedModel(name, pipeline, float(threshold), record, known)) if plan_for else None
            record["plan_sha256"] = self._save_plan(plan, name, record["model_sha256"])
            atomic_write_json(tmp / RECORD, record)
            atomic_write_json(tmp / "metadata.json", {"version": name, "status": status, "reason": reason,
                                                      "record_sha256": record_sha256(record)})
            os.rename(tmp, self.models_dir / name)
            fsync_dir(self.models_dir)
        return name

    def set_status(self, version: str, status: str, **fields) -> None:
        """Update a version's status (candidate, champion, rejected, retired) and notes (never its record)."""
        version = version_name(parse_version(version))
        path = self.models_dir / version / "metadata.json"
        meta = _read_json(path)
        if meta is None:
            raise RegistryError(f"no model version {version}")
        record = self.record(version) or {}
        meta.update(status=status, **{k: v for k, v in fields.items() if k not in record or k in MUTABLE})
        atomic_write_json(path, meta)

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
                                                   "promoted_utc": utc_iso(), "reason": reason})
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
                self.set_status(v, "rejected", model_dropped=utc_iso())
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
