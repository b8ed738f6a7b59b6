"""Personas pointed at MCP servers nobody here wrote: server-everything over Streamable HTTP, mcp-server-time
and mcp-server-git over stdio, through the real CLI, with real calls, ratings and recorded actions."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from persona_runner.commands.target_options import TargetChoice
from persona_runner.domain import module_of_tool
from persona_runner.util.errors import UserError
from tests.cli_helpers import SCRIPT, cli
from tests.foreign_servers import BIN, everything_server, git_repository, recording_proxy, write_catalog

TIME_SERVER = str(BIN / "mcp-server-time")
GIT_SERVER = str(BIN / "mcp-server-git")


@pytest.fixture(scope="module")
def everything() -> Iterator[str]:
    with everything_server() as url:
        yield url


def recorded(db: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str, int]], list[tuple[str, str]]]:
    """(persona, status) of each tick, (persona, module, rating) of each rating, (tool, module) of each call."""
    with sqlite3.connect(db) as conn:
        ticks = conn.execute("SELECT persona_name, status FROM ticks ORDER BY persona_name").fetchall()
        ratings = conn.execute(
            "SELECT p.name, f.module, f.rating FROM persona_feedback f JOIN personas p ON p.user_id = f.persona_id"
        ).fetchall()
        calls = conn.execute("SELECT DISTINCT tool_name, module FROM persona_actions ORDER BY tool_name").fetchall()
    return ticks, ratings, calls


def children_running(marker: str) -> list[int]:
    """Processes whose command line holds `marker`: the stdio servers a run started and left behind."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in command and "pytest" not in command:
                found.append(int(entry.name))
    return found


def test_headers_from_the_environment_reach_an_http_server_and_stay_out_of_the_store(
    everything: str, tmp_path: Path
) -> None:
    catalog = write_catalog(
        tmp_path / "catalog.json",
        [
            {"name": "tinkerer", "moduleMix": {"echo": 2, "get-sum": 1}, "headers": {"X-Persona": "${TINKER_ID}"}},
            {"name": "plumber", "moduleMix": {"get-sum": 1, "get-structured-content": 1}},
        ],
    )
    db = tmp_path / "results.db"
    upstream = everything.removesuffix("/mcp")
    env = {"TEAM_ID": "team-42", "EVERYTHING_TOKEN": "secret-token-7", "TINKER_ID": "tinker-9"}
    with recording_proxy(upstream) as (proxy, seen):
        ran = cli(
            "run",
            *("--mcp-url", f"{proxy}/mcp", "--header", "X-Team: ${TEAM_ID}", "--bearer-env", "EVERYTHING_TOKEN"),
            *("--catalog", str(catalog), "--db", str(db), "--max-turns", "8"),
            env=env,
        )
    assert ran.returncode == 0, ran.stderr
    ticks, ratings, calls = recorded(db)
    assert ticks == [("plumber", "ok"), ("tinkerer", "ok")]
    assert {module for _, module in calls} <= {"echo", "get-sum", "get-structured-content"}
    assert ("get-sum", "get-sum") in calls
    assert {(name, module) for name, module, _ in ratings} >= {("tinkerer", "echo"), ("plumber", "get-sum")}
    posts = [headers for headers in seen.seen if headers.get("authorization")]
    assert posts and all(h["authorization"] == "Bearer secret-token-7" and h["x-team"] == "team-42" for h in posts)
    assert {h.get("x-persona") for h in posts} == {"tinker-9", None}  # only tinkerer's requests carry its header
    stored = db.read_bytes()
    assert b"secret-token-7" not in stored and b"team-42" not in stored
    with sqlite3.connect(db) as conn:
        (config,) = conn.execute("SELECT config FROM runs").fetchone()
    assert json.loads(config)["target"] == {
        "kind": "mcp-http",
        "address": f"{proxy}/mcp",
        "headers": ["X-Team"],
        "bearer_env": "EVERYTHING_TOKEN",
    }


def test_personas_play_stdio_servers_and_no_child_outlives_the_run(tmp_path: Path) -> None:
    repository = git_repository(tmp_path / "repo")
    for name, mix, server in (
        ("clockwatcher", {"get_current_time": 2, "convert_time": 1}, TIME_SERVER),
        ("committer", {"git": 1}, f"{GIT_SERVER} --repository {repository}"),
    ):
        catalog = write_catalog(tmp_path / f"{name}.json", [{"name": name, "moduleMix": mix}])
        db = tmp_path / f"{name}.db"
        ran = cli("run", "--mcp-stdio", server, "--catalog", str(catalog), "--db", str(db), "--max-turns", "6")
        assert ran.returncode == 0, ran.stderr
        ticks, ratings, calls = recorded(db)
        assert ticks == [(name, "ok")]
        assert len(calls) >= 1 and {module for _, module in calls} <= set(mix)
        assert ratings and {module for _, module, _ in ratings} <= set(mix)
    assert children_running(str(repository)) == []
    assert children_running(TIME_SERVER) == []


def test_ctrl_c_stops_the_stdio_child_too(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog.json", [{"name": "clockwatcher", "moduleMix": {"convert_time": 1}}])
    marker = str(tmp_path)  # the child's working directory is not in its command line: tag it with an argument
    server = f"{TIME_SERVER} --local-timezone UTC"
    args = ["run", "--mcp-stdio", server, "--catalog", str(catalog), "--db", str(tmp_path / "r.db")]
    process = subprocess.Popen(
        [SCRIPT, *args, "--max-turns", "500", "--label", marker],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PERSONA_RUNNER_DB": ""},
    )
    deadline = time.monotonic() + 60
    while not children_running("--local-timezone UTC") and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "stopped by SIGINT" in stderr
    assert children_running("--local-timezone UTC") == []


def test_a_catalog_whose_modules_match_no_tool_says_so_and_exits_1(tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "catalog.json", [{"name": "planner", "moduleMix": {"todo": 1, "notes": 1}}])
    ran = cli("run", "--mcp-stdio", TIME_SERVER, "--catalog", str(catalog), "--db", str(tmp_path / "r.db"))
    assert ran.returncode == 1
    assert "planner" in ran.stderr and "notes, todo" in ran.stderr and "get_current_time" in ran.stderr
    assert "Traceback" not in ran.stderr
    assert ran.stderr.startswith("warning: no offered tool belongs to a module of planner")
    with sqlite3.connect(tmp_path / "r.db") as conn:
        assert conn.execute("SELECT status, tool_calls FROM ticks").fetchall() == [("failed", 0)]


def test_validate_against_a_server_maps_its_tools_to_the_catalogs_modules(everything: str, tmp_path: Path) -> None:
    catalog = write_catalog(
        tmp_path / "catalog.json",
        [{"name": "tinkerer", "moduleMix": {"echo": 1, "get-sum": 1, "todo": 1}}],
        targets={"everything": {"kind": "mcp-http", "url": everything}},
    )
    checked = cli("catalog", "validate", str(catalog), "--against", "everything")
    assert checked.returncode == 0, checked.stderr
    out = checked.stdout
    assert "echo -> echo" in out and "get-sum -> get-sum" in out
    assert "modules no tool belongs to: todo" in out
    assert "tools no persona will use:" in out and "get-tiny-image" in out


def test_module_of_a_foreign_tool_follows_the_catalog() -> None:
    known = {"git", "get-sum", "todo"}
    assert module_of_tool("git_status", None, known) == "git"
    assert module_of_tool("get-sum", None, known) == "get-sum"
    assert module_of_tool("get-tiny-image", None, known) == "get-tiny-image"
    assert module_of_tool("files/read", None, {"files"}) == "files"
    assert module_of_tool("todo.create", "tasks", known) == "tasks"  # `_meta.module` wins
    assert module_of_tool("todo.create") == "todo"  # no catalog at hand: the part before the dot


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        (TargetChoice(target="http://127.0.0.1:1", mcp_url="http://127.0.0.1:2/mcp"), "--target and --mcp-url"),
        (TargetChoice(header=["X: y"]), "--header and --bearer-env go with --mcp-url"),
        (TargetChoice(mcp_url="http://127.0.0.1:2/mcp", header=["no colon"]), "write it as 'Name: value'"),
        (TargetChoice(mcp_stdio="   "), "--mcp-stdio is empty"),
        (TargetChoice(env=["A"]), "--env goes with --mcp-stdio"),
        (TargetChoice(mcp_url="127.0.0.1:2/mcp"), "--mcp-url: "),
        (TargetChoice(target_name="staging"), "names no such target"),
    ],
)
def test_target_flags_that_contradict_or_mislead_are_one_line(choice: TargetChoice, message: str) -> None:
    from persona_runner.catalog import load_catalog

    with pytest.raises(UserError) as caught:
        choice.spec(load_catalog(Path(__file__).parent.parent / "catalog.json"))
    assert message in str(caught.value)
