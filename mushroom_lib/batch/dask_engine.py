"""The dask engine of ``mushroom predict --engine dask``: a file, a glob or a folder of CSV files scored over
``dask.dataframe`` partitions, with the same block scoring and rendering as the local engine (same bytes).

Each partition is parsed as strictly as the general reader (pyarrow, ragged rows refused, blank lines dropped)
and scored by ``predict_file.score_block``; every refusal is worded by ``schema``. dask is imported on use.
"""

from __future__ import annotations

import codecs
import glob as globmod
import io
import os
import warnings
from pathlib import Path

import pandas as pd

from ..core.errors import MissingExtra
from ..core.settings import Settings
from ..data.schema import SchemaError, explain_file, not_csv, validate_frame
from ..scoring.loader import champion_scorer, remember_plan
from ..scoring.scorer import Scorer
from .blocks import score_block
from .csv_reader import Block, Layout, is_blank_text, read_layout, validate_block
from .writer import progress_bar, staged_output


def _import_dask():
    try:
        import dask
        import dask.dataframe as dd
    except ImportError:  # pragma: no cover - depends on the environment
        raise MissingExtra("--engine dask needs the optional dask extra: pip install 'mushroom-workbench[dask]' "
                           "(or `pip install -e '.[dask]'` in a checkout)") from None
    return dask, dd


def expand_inputs(input_path: str | Path) -> list[Path]:
    """A file, a glob (``data/*.csv``) or a folder (its ``*.csv`` files), sorted by name."""
    text = str(input_path)
    p = Path(text)
    if p.is_dir():
        files = sorted(x for x in p.iterdir() if x.is_file() and x.suffix.lower() == ".csv")
        if not files:
            raise SchemaError(f"{p} is a folder without .csv files")
        return files
    if any(ch in text for ch in "*?[") and not p.exists():
        files = sorted(Path(x) for x in globmod.glob(text) if Path(x).is_file())
        if not files:
            raise SchemaError(f"{text}: no file matches")
        return files
    return [p]


class PartitionError(Exception):
    """A dask partition could not be read or validated; the driver names the row (see ``predict_dask``)."""

    def __init__(self, number: int, kind: str, detail: str = ""):
        super().__init__(number, kind, detail)
        self.number, self.kind, self.detail = number, kind, detail


def _parse_block(data: bytes, layout: Layout, first: bool, number: int) -> pd.DataFrame:
    """One byte block of a CSV file (cut at line ends by dask) as a frame of strings, as strict as iter_blocks."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    cols = [f"c{i}" for i in range(len(layout.names))]
    ragged = []

    def on_invalid(row) -> str:
        if not is_blank_text(row.text):
            ragged.append(row.text)
        return "skip"

    if first and data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=cols, skip_rows=layout.skip_lines if first else 0,
                                           use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in cols},
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        kind = "utf8" if ("UTF8" in str(exc) or "UTF-8" in str(exc)) else "ragged"
        raise PartitionError(number, kind, str(exc)) from None
    if ragged:
        raise PartitionError(number, "ragged", ragged[0][:80])
    return pd.DataFrame({c: table.column(c).to_numpy(zero_copy_only=False).astype(object) for c in cols}, columns=cols)


def read_csv_dask(layouts: list[Layout], *, blocksize: str | int = "32MiB"):
    """The files as one ``dask.dataframe`` of strings (columns c0..cN), cut in blocks at line ends.

    Parsed by the same strict rules as the local engine (pyarrow, ragged rows refused, blank lines dropped).
    Returns (ddf, where): ``where[i]`` is (layout, block number within its file) of partition i.
    """
    dask, dd = _import_dask()
    from dask.bytes import read_bytes

    parts, where = [], []
    for lay in layouts:
        _, blocks = read_bytes(str(lay.path), delimiter=b"\n", blocksize=blocksize, sample=False)
        for k, block in enumerate(blocks[0]):
            parts.append(dask.delayed(_parse_block, pure=True)(block, lay, k == 0, len(parts)))
            where.append((lay, k))
    width = len(layouts[0].names)
    meta = pd.DataFrame({f"c{i}": pd.Series(dtype=object) for i in range(width)})
    return dd.from_delayed(parts, meta=meta, verify_meta=False), where


def _score_partition(frame: pd.DataFrame, scorer: Scorer, layout: Layout, partition_info=None) -> pd.Series:
    """One dask partition through the same ``score_block`` as the local engine: (CSV text, rows) in a Series."""
    number = (partition_info or {}).get("number", -1)
    try:
        text, n = score_block(scorer, layout, Block.from_frame(frame), 1)
    except SchemaError as exc:
        raise PartitionError(number, "schema", str(exc)) from None
    return pd.Series([(text, n)], dtype=object)


def score_dask(ddf, scorer: Scorer, layout: Layout):
    """Map the block scorer over a dask frame of strings (columns in ``layout.names`` order).

    Returns a dask Series with one (CSV text without header, rows) pair per partition, in order.
    """
    return ddf.map_partitions(_score_partition, scorer, layout, meta=pd.Series(dtype=object),
                              align_dataframes=False)


def predict_dask(settings: Settings, input_path: str | Path, output: str | Path | None = None, *,
                 size_cap: int | None = None, blocksize: str | int = "32MiB", scheduler=None,
                 progress: bool = False, window: int | None = None) -> int:
    """Score a file, a glob or a folder of CSV files over ``dask.dataframe`` partitions; returns rows scored.

    Every partition goes through the same ``score_block`` as the local engine, so the output holds the same
    bytes (one header, rows in file order, files in name order). Partitions are computed a window at a
    time and their text written in order to OUT (temporary file, renamed at the end) or stdout (staged),
    so nothing is written unless every partition validated and scored. ``scheduler`` goes to
    ``dask.compute`` ("threads", "processes", "sync"); when a ``dask.distributed.Client`` exists (e.g.
    ``Client("tcp://scheduler:8786")`` before the call, or ``DASK_SCHEDULER_ADDRESS`` set for the CLI) the
    partitions run on that cluster. Each worker needs this package and read access to the input paths.
    ``size_cap`` applies to each file.
    """
    dask, dd = _import_dask()
    _connect_cluster_from_env()
    scorer = champion_scorer(settings)
    files = expand_inputs(input_path)
    layouts = [read_layout(f, size_cap=size_cap) for f in files]
    header = layouts[0].header_text()
    for lay in layouts[1:]:
        if lay.header_text() != header or lay.features != layouts[0].features:
            raise SchemaError(f"{lay.source} does not have the columns of {layouts[0].source}; "
                              "score files with different columns separately")
    notes: list[str] = []
    for lay in layouts:
        notes += [n for n in lay.warnings if n not in notes]
    for note in notes:
        warnings.warn(note, stacklevel=2)
    ddf, where = read_csv_dask(layouts, blocksize=blocksize)
    texts = score_dask(ddf, scorer, layouts[0]).to_delayed()
    window = window or max(2, os.cpu_count() or 2)
    rows = 0
    total = sum(lay.path.stat().st_size for lay in layouts)
    with staged_output(output) as out, progress_bar(total, progress, "scoring (dask)") as bar:
        out.write(header.encode("utf-8"))
        for start in range(0, len(texts), window):
            try:
                results = dask.compute(*texts[start:start + window], scheduler=scheduler)
            except PartitionError as exc:
                raise _explain_partition(exc, ddf, where, start) from None
            for series in results:
                text, n = series.iloc[0]
                out.write(text.encode("utf-8"))
                rows += n
            bar.update(total * min(start + window, len(texts)) // len(texts) - bar.n)
        if rows == 0:
            validate_frame(pd.DataFrame(columns=layouts[0].names))
            raise SchemaError(f"{layouts[0].source} has no rows")
    remember_plan(settings, scorer)
    return rows


def _connect_cluster_from_env() -> None:
    """Use the cluster named by DASK_SCHEDULER_ADDRESS (dask config ``scheduler-address``), if any."""
    import dask

    address = dask.config.get("scheduler-address", None)
    if not address:
        return
    try:
        from distributed import Client, default_client
    except ImportError:
        raise MissingExtra("DASK_SCHEDULER_ADDRESS is set but dask.distributed is not installed: "
                           "pip install 'dask[distributed]'") from None
    try:
        default_client()
    except ValueError:
        Client(address)


def _explain_partition(exc: PartitionError, ddf, where, start: int) -> SchemaError:
    """The first failing partition from ``start`` on, its error with rows counted from the start of its file.

    Partitions fail concurrently, so the one dask reports may not be the first: walk them in order.
    """
    offsets: dict[Path, int] = {}
    first = start - where[start][1]  # the first block of the file that holds partition `start`
    for i in range(first, exc.number + 1):
        lay, k = where[i]
        try:
            frame = ddf.partitions[i].compute(scheduler="sync")
        except PartitionError:
            if i < start:
                continue
            explain_file(lay.path, lay.source)  # the schema's sentence for the file's first problem
            return not_csv(lay.source)
        offset = offsets.get(lay.path, 0)
        if i >= start:
            try:
                validate_block(lay, Block.from_frame(frame), offset + 1)
            except SchemaError as err:
                return err
        offsets[lay.path] = offset + len(frame) - _blank_rows(frame)
    return SchemaError(exc.detail or str(exc))


def _blank_rows(frame: pd.DataFrame) -> int:
    """Rows whose every cell is blank (dropped by the readers, so not counted in row numbers)."""
    if frame.empty:
        return 0
    return int(frame.apply(lambda s: s.astype(str).str.strip().eq("")).all(axis=1).sum())
