"""The CLI starts without importing what it does not need: listing the commands imports none
of them, and checking a catalog imports neither the product, the LLM SDKs nor the MCP stack.

Each probe runs in a fresh interpreter, since this test process has imported everything already.
Whether a start is fast enough is measured by `bench/cli_startup.py`, not asserted here.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from persona_runner.cli import COMMANDS, app
from persona_runner.commands.lazy import LazyCommand

#: Packages that cost seconds to import between them, none of which these two paths use.
HEAVY = {"anthropic", "openai", "mcp", "tool_registry", "sqlalchemy", "httpx2"}

#: Runs the console entry point in-process with the arguments given as JSON, then prints its
#: exit code and every module imported by then.
PROBE = """
import contextlib, io, json, sys
from persona_runner.cli import main
sys.argv = ["persona-runner", *json.loads(sys.argv[1])]
code = None
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def imported_by(cwd: Path, *args: str) -> set[str]:
    """The modules `persona-runner ARGS` imports when run in `cwd`, checking that it succeeded."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True, check=True, timeout=60, cwd=cwd
    )
    probe = json.loads(done.stdout)
    assert probe["code"] == 0, done.stderr
    return set(probe["modules"])


def packages(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_help_imports_no_command_and_nothing_heavy(tmp_path: Path) -> None:
    modules = imported_by(tmp_path, "--help")
    assert packages(modules) & HEAVY == set()
    command_modules = {command.target.partition(":")[0] for command in COMMANDS}
    assert modules & command_modules == set()


def test_catalog_validate_imports_neither_product_nor_sdks_nor_mcp(tmp_path: Path) -> None:
    # No ./catalog.json in tmp_path: the shipped catalog is checked.
    assert packages(imported_by(tmp_path, "catalog", "validate")) & HEAVY == set()


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: str(command.name))
def test_listed_help_matches_the_command(command: LazyCommand) -> None:
    """The line the top-level help shows is the first paragraph of the command's own help, and
    `persona-runner COMMAND --help` loads the command and prints that help."""
    first_paragraph = inspect.cleandoc(command.load().help or "").split("\n\n")[0]
    assert " ".join(first_paragraph.split()) == command.short_help
    shown = CliRunner().invoke(app, [str(command.name), "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert f"persona-runner {command.name}" in shown.output
