"""Running the `persona-runner` command line: through the console script's own `main()` in this
process, or as the real console script in a subprocess where the process boundary is the point."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from typer.testing import CliRunner

from persona_runner.cli import main
from tool_registry.modules import build_registry
from tool_registry.server import free_port

SCRIPT = str(Path(sys.executable).parent / "persona-runner")
ADMIN = "cli-admin-token"
#: Every tool a persona may be offered: what a test slows down to keep ticks in flight.
ALL_TOOLS = [spec.name for spec in build_registry().proposable()]
#: Wide lines, as a log would keep them, and no store chosen by the caller's environment.
CLI_ENV: dict[str, str | None] = {"COLUMNS": "200", "PERSONA_RUNNER_DB": None}


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`persona-runner ARGS` as the console script runs it, minus ~5 s of imports per call.

    It goes through `persona_runner.cli.main`, so a UserError ends as the same one line on
    stderr and the same exit code. CliRunner swaps sys.stdout and sys.stderr, which the
    commands' rich Consoles and typer.echo look up when they write. An exception main() lets
    through is raised here: the console script would print it as a traceback.
    """
    runner = CliRunner()
    with (
        runner.isolation(env={**CLI_ENV, **(env or {})}) as (stdout, stderr, _),
        contextlib.chdir(cwd or Path.cwd()),
        _argv("persona-runner", *args),
        _last_resort_logging(),
    ):
        code = _exit_code()
        sys.stdout.flush()
        sys.stderr.flush()
        return subprocess.CompletedProcess(
            [SCRIPT, *args], code, stdout.getvalue().decode(), stderr.getvalue().decode()
        )


def _exit_code() -> int:
    """The exit code the console script would end with: main() always ends in sys.exit."""
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    raise AssertionError("main() returned instead of exiting")


@contextmanager
def _argv(*argv: str) -> Iterator[None]:
    """main() reads its arguments from sys.argv, as the console script hands them over."""
    saved = sys.argv
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = saved


@contextmanager
def _last_resort_logging() -> Iterator[None]:
    """In the console script a warning or error logged where no handler is set reaches stderr
    through logging's last resort; pytest's own handlers on the root logger would swallow it here."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


@contextmanager
def served_product(
    tmp_path: Path, *flags: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`persona-runner serve` on a free port, a process of its own (it can be killed mid-run);
    yields (base URL, process) once /health answers."""
    port = free_port()
    command = [
        SCRIPT,
        "serve",
        "--port",
        str(port),
        "--admin-token",
        ADMIN,
        "--data",
        str(tmp_path / f"product-{port}.db"),
        # The product dies with the test: cheap hashing, as for the embedded product of a run.
        "--password-hashing",
        "throwaway",
        *flags,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve did not start: {process.stderr.read() if process.stderr else ''}")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def one_line_error(stderr: str) -> str:
    """The error line of a command that failed as a user's mistake should: one line, no traceback."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert lines, "expected an error message"
    assert "Traceback" not in stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def rows(db: Path, sql: str) -> list[tuple]:
    """What a SQLite results store holds, read as another process would read it."""
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def served_calls(url: str) -> float:
    """Tool calls the product has answered so far, from its own /metrics."""
    metrics = httpx2.get(f"{url}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("persona_product_tool_calls_total{")
    )
