"""Helpers shared by the tests and the benchmarks (not part of the installed package): the CLI runners
(`helpers.cli`) re-exported here, the server process and Chromium path in `helpers.server`."""

from .cli import *  # noqa: F401,F403
