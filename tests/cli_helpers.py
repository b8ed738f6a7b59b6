"""Running the real `persona-runner` console script, and a product served by it, as subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from tool_registry.server import free_port

SCRIPT = str(Path(sys.executable).parent / "persona-runner")
ADMIN = "cli-admin-token"


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("PERSONA_RUNNER_DB", None)
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd)


@contextmanager
def served_product(
    tmp_path: Path, *flags: str, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`persona-runner serve` on a free port; yields (base URL, process) once /health answers."""
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
