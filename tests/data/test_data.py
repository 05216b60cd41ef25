"""`mushroom data`: source order, both layouts, subsets, validation, atomic writes, the real download path.

The download tests serve a zip built at test time from the shared file over http.server on 127.0.0.1
(a free port, a thread, shut down at the end); nothing here reaches the internet.
"""

from __future__ import annotations

import gzip
import http.server
import io
import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from helpers import cli_env, mushroom_cmd, one_error_line, run

from mushroom_lib.core.settings import get_settings
from mushroom_lib.data import dataset as D
from mushroom_lib.data.schema import COLUMNS


def data_folder_files(home: Path) -> list[str]:
    folder = home / "data"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture(scope="module")
def real_frame(real_data) -> pd.DataFrame:
    return pd.read_csv(real_data, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def headerless_bytes(real_frame) -> bytes:
    """The shared file in the UCI layout (no header), built at test time."""
    return real_frame.to_csv(index=False, header=False, lineterminator="\n").encode()


@pytest.fixture(scope="module")
def uci_zip(headerless_bytes) -> bytes:
    """A zip shaped like the UCI archive: agaricus-lepiota.data (no header) plus a names file."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("agaricus-lepiota.names", "attribute information\n")
        zf.writestr(D.UCI_MEMBER, headerless_bytes)
    return buf.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        body, claimed_length, delay = route
        if delay:
            time.sleep(delay)
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(claimed_length))
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


@pytest.fixture(scope="module")
def server(uci_zip):
    """http://127.0.0.1:PORT serving the zip, a truncated copy, a lying copy and a slow copy."""
    half = uci_zip[: len(uci_zip) // 2]
    routes = {
        "/mushroom.zip": (uci_zip, len(uci_zip), 0),
        "/truncated.zip": (half, len(half), 0),           # a cut file, honestly sized
        "/short.zip": (half, len(uci_zip), 0),            # the connection drops mid-transfer
        "/slow.zip": (uci_zip, len(uci_zip), 4.0),        # answers after the client's timeout
    }
    handler = type("Handler", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_default_source_is_the_uci_archive():
    assert D.UCI_URL == "https://archive.ics.uci.edu/static/public/73/mushroom.zip"
    assert D.UCI_MEMBER == "agaricus-lepiota.data"


def test_download_over_loopback(server, home, real_frame):
    res = run("--home", str(home), "data", "--source", f"{server}/mushroom.zip")
    assert res.returncode == 0, res.stderr
    assert "8124 rows" in res.stdout
    assert "edible 4208 (51.8%)" in res.stdout and "poisonous 3916 (48.2%)" in res.stdout
    written = pd.read_csv(home / "data" / "mushrooms.csv", dtype=str, keep_default_na=False)
    assert list(written.columns) == COLUMNS  # the header layout, whatever the source layout
    pd.testing.assert_frame_equal(written, real_frame)
    assert data_folder_files(home) == ["mushrooms.csv", "samples"]  # no temp files left behind


@pytest.mark.parametrize("route, pattern", [
    ("/truncated.zip", "damaged or truncated"),
    ("/short.zip", "stopped at"),
    ("/missing.zip", "Not Found"),
])
def test_broken_download_writes_nothing(server, home, route, pattern):
    res = run("--home", str(home), "data", "--source", f"{server}{route}")
    assert pattern in one_error_line(res)
    assert data_folder_files(home) == []


def test_download_times_out(server, home):
    res = run("--home", str(home), "data", "--source", f"{server}/slow.zip", "--timeout", "1")
    assert "timed out" in one_error_line(res)
    assert data_folder_files(home) == []


def test_truncated_download_keeps_the_existing_copy(server, home, real_data):
    s = get_settings(home)
    D.acquire(s, str(real_data), progress=False)
    before = s.dataset_path.read_bytes()
    res = run("--home", str(home), "data", "--source", f"{server}/truncated.zip")
    one_error_line(res)
    assert s.dataset_path.read_bytes() == before
    assert data_folder_files(home) == ["mushrooms.csv", "samples"]


def _subset(real_frame, n, path: Path, *, header=True) -> Path:
    path.write_bytes(real_frame.sample(n, random_state=n).to_csv(index=False, header=header,
                                                                  lineterminator="\n").encode())
    return path


def test_source_order(server, home, real_frame, tmp_path, monkeypatch):
    """--source, then MUSHROOM_DATA, then an existing data/mushrooms.csv, then the UCI URL."""
    a = _subset(real_frame, 100, tmp_path / "a.csv")
    b = _subset(real_frame, 200, tmp_path / "b.data", header=False)
    monkeypatch.setattr(D, "UCI_URL", f"{server}/mushroom.zip")  # stands in for the archive
    quiet = dict(progress=False, force=True)  # 100 and 200 rows: under the 1,000-row floor
    with pytest.warns(UserWarning):
        # 4. nothing else: the archive
        r = D.acquire(get_settings(home), **quiet)
        assert (r.source, r.rows) == (D.UCI_URL, 8124)
        # 2. MUSHROOM_DATA beats the existing copy
        monkeypatch.setenv("MUSHROOM_DATA", str(b))
        r = D.acquire(get_settings(home), **quiet)
        assert (r.source, r.rows) == (str(b), 200)
        # 1. --source beats MUSHROOM_DATA
        r = D.acquire(get_settings(home), str(a), **quiet)
        assert (r.source, r.rows) == (str(a), 100)
        # 3. without either, the existing copy (not the archive)
        monkeypatch.delenv("MUSHROOM_DATA")
        before = get_settings(home).dataset_path.stat().st_mtime_ns
        r = D.acquire(get_settings(home), **quiet)
        assert (r.source, r.rows) == (str(get_settings(home).dataset_path), 100)
        assert get_settings(home).dataset_path.stat().st_mtime_ns == before  # unchanged, not rewritten


def test_cli_reads_mushroom_data(home, real_data):
    res = run("--home", str(home), "data", env_extra={"MUSHROOM_DATA": str(real_data)})
    assert res.returncode == 0, res.stderr
    assert f"from {real_data}" in res.stdout and "8124 rows" in res.stdout
    assert res.stderr.strip() == ""  # the full set: no subset warning


def test_both_layouts_and_a_local_zip_give_the_same_file(home, tmp_path, real_data, headerless_bytes, uci_zip):
    s = get_settings(home)
    D.acquire(s, str(real_data), progress=False)
    reference = s.dataset_path.read_bytes()
    for name, body in (("uci.data", headerless_bytes), ("uci.zip", uci_zip),
                       ("crlf.csv", real_data.read_bytes().replace(b"\n", b"\r\n"))):
        (tmp_path / name).write_bytes(body)
        s.dataset_path.unlink()
        r = D.acquire(s, str(tmp_path / name), progress=False)
        assert r.rows == 8124 and r.balance == {"e": 4208, "p": 3916}
        assert s.dataset_path.read_bytes() == reference, name


def test_subset_is_accepted_with_a_warning(home, real_frame, tmp_path):
    src = _subset(real_frame, 300, tmp_path / "subset.csv")
    res = run("--home", str(home), "data", "--source", str(src), "--force")
    assert res.returncode == 0, res.stderr
    assert "300 rows" in res.stdout
    warning = [ln for ln in res.stderr.splitlines() if ln.startswith("mushroom: warning:")]
    assert warning and "300 rows" in warning[0] and "8124" in warning[0]
    assert len(pd.read_csv(home / "data" / "mushrooms.csv")) == 300


@pytest.mark.parametrize("case, pattern", [
    ("bad_code", "row 5, column 'odor' has 'z'"),
    ("bad_class", "label 'x'"),
    ("no_class", "missing column 'class'"),
    ("ragged", "ragged"),
    ("json", "JSON"),
    ("missing_file", "does not exist"),
])
def test_invalid_source_leaves_the_existing_file(case, pattern, home, real_data, real_frame, tmp_path):
    s = get_settings(home)
    D.acquire(s, str(real_data), progress=False)
    before = s.dataset_path.read_bytes()
    df = real_frame.head(50).copy()
    src = tmp_path / f"{case}.csv"
    if case == "bad_code":
        df.loc[4, "odor"] = "z"
    elif case == "bad_class":
        df.loc[7, "class"] = "x"
    elif case == "no_class":
        df = df.drop(columns="class")
    body = df.to_csv(index=False, lineterminator="\n").encode()
    if case == "ragged":
        body += b"p,x\n"
    if case == "json":
        body = df.to_json(orient="records").encode()
    if case != "missing_file":
        src.write_bytes(body)
    res = run("--home", str(home), "data", "--source", str(src))
    assert pattern in one_error_line(res)
    assert s.dataset_path.read_bytes() == before
    assert data_folder_files(home) == ["mushrooms.csv", "samples"]


def test_write_is_atomic(home, real_data, real_frame, tmp_path, monkeypatch):
    """A crash at the rename leaves the old file whole and no temporary file behind."""
    s = get_settings(home)
    src = _subset(real_frame, 120, tmp_path / "small.csv")
    with pytest.warns(UserWarning):
        D.acquire(s, str(src), progress=False, force=True)
    before = s.dataset_path.read_bytes()

    import mushroom_lib.core.fileio as fileio

    def crash(*args, **kwargs):
        raise OSError("simulated power cut")

    monkeypatch.setattr(fileio.os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        D.acquire(s, str(real_data), progress=False)
    monkeypatch.undo()
    assert s.dataset_path.read_bytes() == before
    assert data_folder_files(home) == ["mushrooms.csv", "samples"]


def test_load_dataset_without_data_says_what_to_run(home):
    with pytest.raises(D.DataError, match="mushroom data"):
        D.load_dataset(get_settings(home))


# ---------------------------------------------------------------- caps: size, rows, class shares
def _zip(path: Path, pieces, repeat: int) -> Path:
    """A zip whose one member is ``pieces`` written ``repeat`` times (streamed: little memory here)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        with zf.open(D.UCI_MEMBER, "w", force_zip64=True) as fh:
            for _ in range(repeat):
                fh.write(pieces)
    return path


#: Starts the command bounded by RLIMIT_AS and prints its own peak RSS. The command is started by this small
#: launcher, not by pytest: on Linux a child's ru_maxrss starts from the RSS of the process that forked it
#: (exec keeps the old address space's high-water mark), and pytest's own RSS grows over a run.
_RSS_LAUNCHER = r"""
import json, os, resource, subprocess, sys
limit = int(sys.argv[1]) << 20
def bound():
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
proc = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL, preexec_fn=bound)
_, status, usage = os.wait4(proc.pid, 0)
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "maxrss": usage.ru_maxrss * 1024}))
"""


def _run_measured(*args: str, address_space_mib: int = 1024) -> tuple[int, str, int]:
    """The console script in a child bounded by RLIMIT_AS (a regression fails instead of eating the
    machine); returns (exit status, stderr, the child's own peak resident memory in bytes)."""
    res = subprocess.run([sys.executable, "-S", "-c", _RSS_LAUNCHER, str(address_space_mib), *mushroom_cmd(), *args],
                         capture_output=True, text=True, env=cli_env(), timeout=300)
    info = json.loads(res.stdout.strip().splitlines()[-1])
    return info["code"], res.stderr, info["maxrss"]


def test_zip_bomb_is_refused_within_300_mib_naming_the_cap(home, tmp_path):
    """500 MB of zeros in a ~0.5 MB zip: inflated in a stream and cut off at the 64 MiB cap."""
    bomb = _zip(tmp_path / "bomb.zip", b"0" * (1 << 20), 500)
    assert bomb.stat().st_size < 1 << 20
    code, err, peak = _run_measured("--home", str(home), "data", "--source", str(bomb))
    line = one_error_line(type("R", (), {"returncode": code, "stdout": "", "stderr": err}))
    assert "64 MiB" in line and "cap" in line and len(line) <= 300 + len("mushroom: error: ")
    assert peak < 300 << 20, f"peak resident memory {peak / 2**20:.0f} MiB"
    assert data_folder_files(home) == []


def test_a_zip_of_too_many_valid_rows_is_refused_while_reading(home, tmp_path, real_frame):
    """About 100 MB of valid rows: over the row cap (stopped early), and over the size cap even with --force."""
    block = real_frame.head(200).to_csv(index=False, header=False, lineterminator="\n").encode() * 50
    src = _zip(tmp_path / "rows.zip", block, 2 * 1024 * 1024 * 50 // len(block) + 1)
    line = one_error_line(run("--home", str(home), "data", "--source", str(src)))
    assert "more than 1,000,000 rows" in line and "--force" in line
    line = one_error_line(run("--home", str(home), "data", "--source", str(src), "--force"))
    assert "64 MiB" in line
    assert data_folder_files(home) == []


def test_gzip_source_is_read_and_a_gzip_bomb_refused(home, tmp_path, real_data, real_frame):
    good = tmp_path / "mushrooms.csv.gz"
    good.write_bytes(gzip.compress(real_data.read_bytes()))
    res = run("--home", str(home), "data", "--source", str(good))
    assert res.returncode == 0, res.stderr
    pd.testing.assert_frame_equal(pd.read_csv(home / "data" / "mushrooms.csv", dtype=str,
                                              keep_default_na=False), real_frame)
    before = (home / "data" / "mushrooms.csv").read_bytes()
    bomb = tmp_path / "bomb.csv.gz"
    with gzip.open(bomb, "wb") as fh:
        for _ in range(80):
            fh.write(b"0" * (1 << 20))
    assert "64 MiB" in one_error_line(run("--home", str(home), "data", "--source", str(bomb)))
    assert (home / "data" / "mushrooms.csv").read_bytes() == before  # the refused source changed nothing


@pytest.mark.parametrize("case, pattern", [
    ("too_few_rows", "999 rows; a dataset needs 1,000 to 1,000,000 rows"),
    ("one_class_rare", "is 5.0% poisonous; each class must make up 10% to 90%"),
])
def test_dataset_shape_is_refused_unless_forced(case, pattern, home, real_frame, tmp_path):
    if case == "too_few_rows":
        df = real_frame.sample(999, random_state=1)
    else:
        edible, poisonous = real_frame[real_frame["class"] == "e"], real_frame[real_frame["class"] == "p"]
        df = pd.concat([edible.sample(1900, random_state=1), poisonous.sample(100, random_state=1)])
    src = tmp_path / f"{case}.csv"
    src.write_bytes(df.to_csv(index=False, lineterminator="\n").encode())
    line = one_error_line(run("--home", str(home), "data", "--source", str(src)))
    assert pattern in line and "--force" in line
    assert data_folder_files(home) == []
    res = run("--home", str(home), "data", "--source", str(src), "--force")
    assert res.returncode == 0, res.stderr
    assert len(pd.read_csv(home / "data" / "mushrooms.csv")) == len(df)
    with pytest.raises(D.DataError, match="--force"):
        D.acquire(get_settings(home), str(src), progress=False)
