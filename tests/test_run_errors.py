"""Every way a run can go wrong ends in one clear line, the right exit code, and nothing
recorded lost or half-written."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from persona_runner.catalog import Catalog, default_catalog_path, load_catalog
from persona_runner.run.recorder import RecordError
from persona_runner.run.runner import _write_run
from persona_runner.store.db import open_store
from persona_runner.store.models import Run
from tests.cli_helpers import ADMIN, ALL_TOOLS, SCRIPT, cli, one_line_error, rows, served_calls, served_product
from tests.product_helpers import running_product
from tool_registry.server import BackgroundServer, free_port


@pytest.mark.parametrize("flags", [("run", "--bogus"), ("run", "--max-turns", "0"), ("personas", "show")])
def test_a_bad_flag_is_one_usage_line(tmp_path: Path, flags: tuple[str, ...]) -> None:
    done = cli(*flags, cwd=tmp_path)
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"persona-runner {flags[0]}" in line and "--help" in line
    assert not list(tmp_path.iterdir())


def test_malformed_catalog(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text('{"version": 1, "personas": [}')
    done = cli("run", "--catalog", str(catalog), "--db", str(tmp_path / "r.db"))
    assert done.returncode == 2
    assert "invalid JSON" in one_line_error(done.stderr)
    assert not (tmp_path / "r.db").exists()


def test_invalid_catalog_lists_every_problem(tmp_path: Path) -> None:
    raw = json.loads(default_catalog_path().read_text())
    raw["personas"][1]["email"] = "someone@gmail.com"
    raw["personas"][3]["tickCadence"] = "fortnightly"
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps(raw))
    done = cli("run", "--catalog", str(catalog), "--db", str(tmp_path / "r.db"))
    assert done.returncode == 2
    assert "personas[1].email" in done.stderr and "personas[3].tickCadence" in done.stderr
    assert "Traceback" not in done.stderr
    validate = cli("catalog", "validate", str(catalog))
    assert validate.returncode == 2 and "personas[1].email" in validate.stderr


def test_unknown_persona(tmp_path: Path) -> None:
    done = cli("run", "--persona", "nobody", "--db", str(tmp_path / "r.db"))
    assert done.returncode == 2
    assert "nobody" in one_line_error(done.stderr)


def test_unreachable_target(tmp_path: Path) -> None:
    done = cli("run", "--target", "http://127.0.0.1:9", "--db", str(tmp_path / "r.db"))
    assert done.returncode == 1
    assert "unreachable" in one_line_error(done.stderr)
    assert not (tmp_path / "r.db").exists()


@pytest.mark.parametrize("command", ["run", "seed"])
@pytest.mark.parametrize(
    "target", ["http://127.0.0.1:abc", "http://127.0.0.1:99999", "127.0.0.1:8765", "ftp://127.0.0.1"]
)
def test_a_malformed_target_is_one_usage_line(tmp_path: Path, command: str, target: str) -> None:
    done = cli(command, "--target", target, "--admin-token", ADMIN, "--db", str(tmp_path / "r.db"))
    assert done.returncode == 2
    # Only `run` has an embedded product to offer instead; `seed` needs one that is up.
    embedded = ", or give embedded for the embedded product" if command == "run" else ""
    assert (
        one_line_error(done.stderr)
        == f"error: --target {target!r} is not an http(s) URL with a host: write it like http://127.0.0.1:8765"
        + embedded
    )
    assert not (tmp_path / "r.db").exists()


def test_a_refused_admin_token_leaves_no_results_store(tmp_path: Path) -> None:
    with served_product(tmp_path) as (url, _):
        done = cli("seed", "--target", url, "--admin-token", "not-the-token", "--db", str(tmp_path / "r.db"))
    assert done.returncode == 1
    assert "/api/v1/admin/personas answered 401" in one_line_error(done.stderr)
    assert not (tmp_path / "r.db").exists()


def test_serving_on_a_port_in_use_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = cli(
            "serve", "--port", str(port), "--data", str(tmp_path / "p.db"), "--signing-key", str(tmp_path / "k.pem")
        )
    assert done.returncode == 1
    assert (
        one_line_error(done.stderr) == f"error: cannot listen on 127.0.0.1:{port}: Address already in use;"
        " pick another --port or --host, or stop what uses it"
    )
    assert len(done.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # no product database, no signing key


def test_an_unseeded_target_says_once_how_to_seed_it(tmp_path: Path) -> None:
    with running_product(str(tmp_path / "product.db"), tmp_path) as product:
        done = cli(
            "run", "--target", product.url, "--persona", "maya", "--persona", "ravi", "--db", str(tmp_path / "r.db")
        )
    assert done.returncode == 1
    assert len([line for line in done.stderr.splitlines() if "login refused" in line]) == 2
    hint = f"seed it: persona-runner seed --target {product.url} --admin-token ... (or pass --admin-token to run)"
    assert done.stderr.count(hint) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("where", ["missing-dir", "a-directory", "read-only"])
def test_results_store_that_cannot_be_written(tmp_path: Path, where: str) -> None:
    if where == "missing-dir":
        db = tmp_path / "no" / "such" / "dir" / "r.db"
    elif where == "a-directory":
        db = tmp_path / "store"
        db.mkdir()
    else:
        db = tmp_path / "r.db"
        db.write_bytes(b"")
        db.chmod(0o444)
        if os.access(db, os.W_OK):
            pytest.skip("running as a user that ignores file permissions")
    done = cli("run", "--db", str(db))
    assert done.returncode == 2
    assert "results store" in one_line_error(done.stderr)


@pytest.mark.parametrize("command", [("personas", "list"), ("run",)])
def test_a_results_store_that_is_not_a_database(tmp_path: Path, command: tuple[str, ...]) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"not": "a database"}\n')
    done = cli(*command, "--db", str(notes))
    assert done.returncode == 2
    line = one_line_error(done.stderr)
    assert "results store" in line and "not a database" in line and "--db" in line
    assert notes.read_text() == '{"not": "a database"}\n'


def test_a_store_refusing_the_run_row_is_a_record_error(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "r.db"))
    with pytest.raises(RecordError, match="could not record run r1"):
        _write_run(store, Run(run_id="r1", driver="scripted", target=None))  # type: ignore[arg-type]


def test_production_refuses_the_development_secret(tmp_path: Path) -> None:
    done = cli("run", "--db", str(tmp_path / "r.db"), env={"PERSONA_ENV": "production"})
    assert done.returncode == 2
    assert "PERSONA_SEED_SECRET" in one_line_error(done.stderr)


def test_wrong_secret_fails_the_ticks_and_records_why(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    # Only the two personas the run plays are seeded: each seed hashes (and a re-seed checks) every password.
    both = load_catalog(default_catalog_path()).select(["maya", "ravi"])
    catalog = tmp_path / "catalog.json"
    catalog.write_text(Catalog(version=1, personas=both).model_dump_json(by_alias=True, exclude_none=True))
    seed = ("seed", "--target", "{url}", "--admin-token", ADMIN, "--catalog", str(catalog), "--db", str(db))
    with served_product(tmp_path) as (url, _):
        seeded = cli(*(arg.format(url=url) for arg in seed), env={"PERSONA_SEED_SECRET": "the-right-one"})
        assert seeded.returncode == 0, seeded.stderr
        reseeded = cli(*(arg.format(url=url) for arg in seed), env={"PERSONA_SEED_SECRET": "the-right-one"})
        assert "already up to date" in reseeded.stdout
        done = cli(
            "run",
            "--target",
            url,
            "--persona",
            "maya",
            "--persona",
            "ravi",
            "--db",
            str(db),
            env={"PERSONA_SEED_SECRET": "a-wrong-one", "COLUMNS": "60"},
        )
    assert done.returncode == 1
    assert "login refused" in done.stderr and "Traceback" not in done.stderr
    ticks = rows(db, "SELECT persona_name, status, error FROM ticks ORDER BY 1")
    assert [(name, status) for name, status, _ in ticks] == [("maya", "failed"), ("ravi", "failed")]
    assert all("PERSONA_SEED_SECRET" in error for _, _, error in ticks)
    # Each failure stays whole on its line in a log, and a refused login is no activity.
    assert (
        len([line for line in done.stderr.splitlines() if "login refused" in line and "PERSONA_SEED_SECRET?)" in line])
        == 2
    )
    assert rows(db, "SELECT name, last_active_at FROM personas WHERE name IN ('maya', 'ravi') ORDER BY 1") == [
        ("maya", None),
        ("ravi", None),
    ]


def test_a_tool_hanging_past_the_tick_timeout(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    delays = [flag for tool in ALL_TOOLS for flag in ("--delay", f"{tool}=30s")]
    with served_product(tmp_path, *delays) as (url, server):
        started = time.monotonic()
        done = cli(
            "run", "--target", url, "--admin-token", ADMIN, "--persona", "ravi", "--timeout", "3", "--db", str(db)
        )
        elapsed = time.monotonic() - started
        server.kill()  # it would finish the abandoned 30 s call before a graceful stop
    assert done.returncode == 1
    assert "timeout" in done.stderr
    assert elapsed < 25
    [(status, error, calls)] = rows(db, "SELECT status, error, tool_calls FROM ticks")
    assert status == "timeout" and "3 s" in error
    [(result, message)] = rows(db, "SELECT result, error_message FROM persona_actions")
    assert result == "error" and "timeout" in message
    assert calls == 1


def test_a_gateway_that_dies_mid_tick_keeps_what_was_recorded(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    delays = [flag for tool in ALL_TOOLS for flag in ("--delay", f"{tool}=250ms")]
    with served_product(tmp_path, *delays) as (url, server):
        assert cli("seed", "--target", url, "--admin-token", ADMIN, "--db", str(db)).returncode == 0
        run = subprocess.Popen(
            [SCRIPT, "run", "--target", url, "--persona", "ravi", "--max-turns", "60", "--db", str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while served_calls(url) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        server.kill()
        server.wait()
        _, stderr = run.communicate(timeout=120)
    assert run.returncode == 1, stderr
    assert "Traceback" not in stderr
    [(status, error, calls)] = rows(db, "SELECT status, error, tool_calls FROM ticks")
    assert status == "failed" and "stopped answering" in error, error
    actions = rows(db, "SELECT seq, result FROM persona_actions ORDER BY seq")
    assert len(actions) == calls >= 2
    assert [seq for seq, _ in actions] == list(range(calls))
    assert actions[0][1] == "ok" and actions[-1][1] == "error"
    assert rows(db, "SELECT COUNT(*) FROM transcripts") == [(1,)]


def test_runs_against_different_products_share_one_persona_history(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    for seed in ("1", "2"):  # each embedded product hands out other user ids
        done = cli("run", "--persona", "maya", "--persona", "ravi", "--seed", seed, "--db", str(db))
        assert done.returncode == 0, done.stderr
    catalog_size = len(json.loads(default_catalog_path().read_text())["personas"])
    assert rows(db, "SELECT COUNT(*) FROM personas") == [(catalog_size,)]  # seeding records every persona once
    assert rows(db, "SELECT COUNT(DISTINCT persona_id) FROM ticks") == [(2,)]
    assert rows(db, "SELECT COUNT(*) FROM ticks") == [(4,)]


def test_recording_without_a_key_leaves_an_existing_cassette_alone(tmp_path: Path) -> None:
    cassette = tmp_path / "keep.jsonl"
    cassette.write_text('{"kept": true}\n')
    done = cli(
        "run",
        "--driver",
        "anthropic",
        "--model",
        "m",
        "--cassette",
        "record",
        str(cassette),
        "--db",
        str(tmp_path / "r.db"),
        env={"ANTHROPIC_API_KEY": ""},
    )
    assert done.returncode == 2 and "ANTHROPIC_API_KEY" in one_line_error(done.stderr)
    assert cassette.read_text() == '{"kept": true}\n'
    into_directory = cli(
        "run",
        "--driver",
        "anthropic",
        "--model",
        "m",
        "--cassette",
        "record",
        str(tmp_path),
        "--db",
        str(tmp_path / "r.db"),
        env={"ANTHROPIC_API_KEY": "k"},
    )
    assert into_directory.returncode == 2 and "cannot record cassette" in one_line_error(into_directory.stderr)


@pytest.mark.parametrize("flags", [("--cassette", "record", "x.jsonl"), ("--max-tokens-per-run", "100")])
def test_llm_only_flags_are_refused_with_the_scripted_driver(tmp_path: Path, flags: tuple[str, ...]) -> None:
    done = cli("run", *flags, "--db", str(tmp_path / "r.db"), cwd=tmp_path)
    assert done.returncode == 2 and "LLM drivers" in one_line_error(done.stderr)


def test_llm_driver_without_a_model(tmp_path: Path) -> None:
    done = cli("run", "--driver", "openai", "--db", str(tmp_path / "r.db"), env={"OPENAI_API_KEY": "k"})
    assert done.returncode == 2 and "--model" in one_line_error(done.stderr)


def test_a_target_that_is_not_a_persona_product(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "health").write_text("<html><body>hello</body></html>")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx2.TransportError:
                time.sleep(0.1)
        done = cli("run", "--target", f"http://127.0.0.1:{port}", "--db", str(tmp_path / "r.db"))
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 1
    assert "is --target a persona product?" in one_line_error(done.stderr)


def fake_product(answers: dict[str, Any]) -> Starlette:
    """A product answering each endpoint with the JSON body given for it (`{}` unless given);
    a callable answer is called with the request's JSON body (None for a GET), a Response is sent as is."""

    async def answer(request: Request) -> Response:
        body = answers.get(request.url.path, {})
        if isinstance(body, Response):
            return body
        if callable(body):
            body = body(await request.json() if request.method == "POST" else None)
        return JSONResponse(body)

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])


WELL_SHAPED = {
    "/api/v1/admin/personas": lambda persona: (
        {"user": {"id": persona["email"]}, "change": "unchanged"} if persona else {"personas": []}
    ),
    "/api/v1/admin/spaces": {"added": []},
    "/api/v1/auth/login": {"token": "t", "user": {"id": "u1"}},
}


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ({}, "GET /api/v1/admin/personas on http://127.0.0.1:"),
        (
            {"/health": JSONResponse(["down", "for\nmaintenance"], status_code=503)},
            'GET /health answered 503: ["down","for\\nmaintenance"]',
        ),
        ({**WELL_SHAPED, "/api/v1/me/spaces": {"spaces": [{"id": "s1"}]}}, "GET /api/v1/me/spaces on "),
        ({**WELL_SHAPED, "/api/v1/me/spaces": {"spaces": []}}, "belongs to no space"),
    ],
    ids=["no-personas-in-answer", "error-that-is-not-an-object", "space-without-fields", "no-spaces"],
)
def test_a_json_product_of_another_shape(tmp_path: Path, answers: dict[str, Any], expected: str) -> None:
    with BackgroundServer(fake_product(answers)) as server:
        done = cli("run", "--target", server.url, "--admin-token", ADMIN, "--db", str(tmp_path / "r.db"))
    assert done.returncode == 1
    assert expected in one_line_error(done.stderr)
    store = tmp_path / "r.db"
    if "/api/v1/admin/personas" in answers:  # the product passed the check: the store exists, and holds no run
        assert rows(store, "SELECT COUNT(*) FROM runs") == [(0,)]
    else:
        assert not store.exists()


def test_a_target_without_an_mcp_gateway_fails_its_ticks_in_one_line(tmp_path: Path) -> None:
    answers = {
        **WELL_SHAPED,
        "/api/v1/me/spaces": {"spaces": [{"id": "s1", "name": "Maya", "type": "personal", "role": "owner"}]},
    }
    answers["/mcp"] = JSONResponse({"error": "no MCP here"}, status_code=404)
    with BackgroundServer(fake_product(answers)) as server:
        done = cli("run", "--target", server.url, "--persona", "maya", "--db", str(tmp_path / "r.db"))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    expected = f"{server.url}/mcp refused the MCP session"
    assert [line for line in done.stderr.splitlines() if expected in line] == [
        line for line in done.stderr.splitlines() if line.strip()
    ]
    assert [
        (status, expected in error) for status, error in rows(tmp_path / "r.db", "SELECT status, error FROM ticks")
    ] == [("failed", True)]
