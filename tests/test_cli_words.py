"""What the command line says reads right to a person: counts in the singular when there is one,
a next command that runs as printed, help that names values in words rather than Python types,
and dry runs that say what they would do."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.core import TyperGroup
from typer.testing import CliRunner

from persona_runner.cli import COMMANDS, app
from persona_runner.util.text import counted
from tests.cli_helpers import cli, one_line_error
from tests.product_helpers import ADMIN, running_product

#: What typer shows for an option given no metavar: its Python type (`<str>`, `<list[str]>`,
#: `<str,Path>...`, `<int range>`, `<path>`). Choices (`<text|json>`) read as they are.
PYTHON_TYPE = re.compile(r"<(?:str|int|float|path|list\[[^>]*\]|[^<>|]*,[^<>|]*|(?:int|float) range)>")


def test_counts_take_the_singular_for_one() -> None:
    assert [counted(n, "rating") for n in (0, 1, 2)] == ["0 ratings", "1 rating", "2 ratings"]
    assert counted(1, "retry", "retries") == "1 retry" and counted(3, "retry", "retries") == "3 retries"


def test_a_run_of_one_call_says_so_and_its_next_command_runs_as_printed(tmp_path: Path) -> None:
    db = tmp_path / "elsewhere.db"
    done = cli("run", "--persona", "maya", "--max-turns", "1", "--db", str(db), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.search(r"mean rating \d\.\d \(1 rating\), 1 call, error rate", done.stdout), done.stdout
    assert not re.search(r"\b1 (ratings|calls|ticks|personas)\b", done.stdout + done.stderr)
    program, *args = shlex.split(done.stdout.rsplit("next: ", 1)[1])
    assert program == "persona-runner" and args[-2:] == ["--db", str(db)]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    report = cli(*args, cwd=elsewhere)  # from anywhere: the command names the store it read
    assert report.returncode == 0, report.stderr


def test_the_scripted_driver_refuses_a_model_it_would_ignore(tmp_path: Path) -> None:
    done = cli("run", "--model", "gpt-5", "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    assert done.returncode == 2
    assert "--model and --base-url apply to the LLM drivers" in one_line_error(done.stderr)
    assert not list(tmp_path.iterdir())


def test_a_dry_run_seed_says_what_it_would_seed(tmp_path: Path) -> None:
    with running_product(str(tmp_path / "product.db"), tmp_path) as product:
        done = cli("seed", "--target", product.url, "--admin-token", ADMIN, "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"would seed \d+ personas and \d+ spaces on {product.url}: dry run, nothing written", last)


def _commands() -> Iterator[list[str]]:
    """Every command and subcommand, as the words that name it."""
    for lazy in COMMANDS:
        loaded = lazy.load()
        yield [str(lazy.name)]
        if isinstance(loaded, TyperGroup):
            yield from ([str(lazy.name), name] for name in loaded.commands)


@pytest.mark.parametrize("command", list(_commands()), ids=" ".join)
def test_help_names_option_values_in_words(command: list[str]) -> None:
    shown = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    options = [line.strip("│ ") for line in shown.output.splitlines() if line.lstrip("│ *").startswith("--")]
    assert [line for line in options if PYTHON_TYPE.search(line) and not line.startswith("--help ")] == []
