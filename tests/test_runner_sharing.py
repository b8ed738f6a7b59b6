"""What one runner process shares between its personas: one HTTP connection pool and TLS context, and each
tool's output schema compiled once, however many personas tick (a real run against a served product)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp.client.session import ClientSession

from persona_runner.catalog import load_catalog
from persona_runner.credentials import DEV_SECRET
from persona_runner.drivers.scripted import ScriptedDriver
from persona_runner.run.runner import RunSettings, execute_run
from persona_runner.store.db import open_store
from persona_runner.targets.spec import TargetSpec
from tests.cli_helpers import served_product
from tests.worker_helpers import seeded, write_catalog

PERSONAS = 6


def test_every_persona_of_a_run_shares_one_pool_and_each_schema_is_compiled_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: Counter[str] = Counter()
    compiled: Counter[str] = Counter()

    def counting(name: str, make: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            made[name] += 1
            return make(*args, **kwargs)

        return counted

    real_validator = ClientSession._output_schema_validator

    def validator(session: ClientSession, name: str, output_schema: dict[str, Any]) -> Any:
        if name not in session._tool_output_validators:  # the SDK compiles the schema now
            compiled[name] += 1
        return real_validator(session, name, output_schema)

    catalog_path = write_catalog(tmp_path, PERSONAS)
    catalog = load_catalog(catalog_path)
    store = open_store(str(tmp_path / "results.db"))
    with served_product(tmp_path) as (url, _):
        seeded(url, catalog_path, str(tmp_path / "seed.db"))
        monkeypatch.setattr(httpx2, "create_ssl_context", counting("tls", httpx2.create_ssl_context))
        monkeypatch.setattr(httpx2, "AsyncHTTPTransport", counting("pool", httpx2.AsyncHTTPTransport))
        monkeypatch.setattr(ClientSession, "_output_schema_validator", validator)
        settings = RunSettings(
            target=TargetSpec.product(url), driver="scripted", concurrency=PERSONAS, modules=catalog.modules
        )
        result = anyio.run(
            lambda: execute_run(
                settings, catalog.personas, secret=DEV_SECRET, store=store, make_driver=lambda _p: ScriptedDriver()
            )
        )
    store.dispose()
    assert not result.failed and len(result.ticks) == PERSONAS
    assert sum(len(tick.calls) for tick in result.ticks) >= PERSONAS * 10
    assert made == {"tls": 1, "pool": 1}
    # Every tool called was compiled for the first persona that called it, and never again.
    assert compiled and set(compiled.values()) == {1}, compiled
