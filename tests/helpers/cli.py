"""Shared test helpers: run the real `mushroom` command (a process, or cli.main in this process) and check
that a refusal is one clean error line. Test files import these instead of keeping copies."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Run:
    """What a command run gave: exit status, stdout, stderr (as subprocess.CompletedProcess has them)."""

    returncode: int
    stdout: str
    stderr: str


def mushroom_cmd() -> list[str]:
    """The installed console script (next to this interpreter), else the module."""
    script = Path(sys.executable).with_name("mushroom")
    return [str(script)] if script.exists() else [sys.executable, "-m", "mushroom_lib.cli"]


def cli_env(extra: dict | None = None) -> dict:
    """The environment of a command under test: no MUSHROOM_DATA/HOME leaking in, no tracking, no reports."""
    env = {k: v for k, v in os.environ.items() if k not in ("MUSHROOM_DATA", "MUSHROOM_HOME")}
    env.update(DO_NOT_TRACK="1", MUSHROOM_REPORT_ON_PROMOTE="0", **(extra or {}))
    return env


def run(*args: str, env_extra: dict | None = None, cwd: Path | None = None, timeout: float = 600) -> Run:
    """The console script in its own process."""
    res = subprocess.run([*mushroom_cmd(), *args], capture_output=True, text=True, env=cli_env(env_extra),
                         cwd=cwd, timeout=timeout)
    return Run(res.returncode, res.stdout, res.stderr)


def run_main(*args: str) -> Run:
    """``mushroom_lib.cli.commands.main`` (what the console script calls) in this process: same code, no startup cost.

    An exception that escapes main() fails the test outright, as a traceback would.
    """
    from mushroom_lib.cli import commands as cli

    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return Run(code, out.getvalue(), err.getvalue())


def one_error_line(res) -> str:
    """The single `mushroom: error: ...` line of a refusal with exit status 2 (no traceback)."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("mushroom: error: "), res.stderr
    return lines[0]


def assert_clean_failure(r, *patterns: str) -> str:
    """A non-zero exit with one error line on stderr holding every pattern; returns the line."""
    assert r.returncode != 0, f"exit 0 on bad input; stderr: {r.stderr}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {r.stderr!r}"
    assert lines[0].startswith("mushroom: error: "), lines[0]
    for pat in patterns:
        assert pat in lines[0], f"{pat!r} not in {lines[0]!r}"
    return lines[0]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under folder with a hash of its content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
