"""Build the driver a run asked for (`--driver NAME --model M ...`), one per persona per day.

Run-level objects (the cassette, the run's token budget) are passed in and
shared; everything per tick (the SDK client, the retry budget, the usage) is
fresh in each driver. Keys are read here and nowhere else, so a missing key is
one line before any tick starts, and a cassette replay needs no key at all.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import httpx2

from persona_runner.domain import Driver
from persona_runner.drivers import DRIVERS
from persona_runner.drivers.budget import RunBudget
from persona_runner.drivers.cassette import Cassette
from persona_runner.drivers.llm import LLMDriver, RetryPolicy
from persona_runner.drivers.scripted import ScriptedDriver
from persona_runner.util.errors import UserError
from persona_runner.util.urls import require_http_url

#: Each LLM driver's class, imported only when a run asks for it: their SDKs would cost every scripted run,
#: every soak and every worker about 50 MB and 2 s of start-up.
LLM_DRIVERS: dict[str, str] = {
    "anthropic": "persona_runner.drivers.anthropic_driver:AnthropicDriver",
    "openai": "persona_runner.drivers.openai_driver:OpenAIDriver",
}
KEY_VARIABLES = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
BASE_URL_VARIABLES = {"anthropic": "ANTHROPIC_BASE_URL", "openai": "OPENAI_BASE_URL"}
#: Sent in place of a key during replay: the cassette answers, no provider ever sees it.
REPLAY_KEY = "cassette-replay"
DEFAULT_RETRY_BUDGET = RetryPolicy().budget


def llm_driver_class(name: str) -> type[LLMDriver]:
    module, _, attribute = LLM_DRIVERS[name].partition(":")
    driver: type[LLMDriver] = getattr(importlib.import_module(module), attribute)
    return driver


def check_keys(name: str, env: Mapping[str, str] = os.environ) -> None:
    """Fail in one line when the driver's API key is not set (call before any tick starts)."""
    variable = KEY_VARIABLES.get(name)
    if variable and not env.get(variable):
        raise UserError(
            f"{variable} is not set: export it to use --driver {name}, or replay a run with --cassette replay PATH"
        )


def make_client(
    sdk: Callable[..., Any], api_key: str, base_url: str | None, http_client: httpx2.AsyncClient | None
) -> Any:
    """An SDK client (`sdk` is its class) that never retries on its own.

    Retries, their budget and their waits are the driver's.
    """
    return sdk(api_key=api_key, base_url=base_url, http_client=http_client, max_retries=0)


def base_url_for(name: str, flag: str | None, env: Mapping[str, str] = os.environ) -> str | None:
    """`--base-url`, else the provider's base-URL variable, else None (the SDK's own default)."""
    variable = BASE_URL_VARIABLES[name]
    url, source = (flag, "--base-url") if flag else (env.get(variable) or None, variable)
    return None if url is None else require_http_url(url, source, "http://127.0.0.1:11434/v1")


def make_driver(
    name: str,
    *,
    model: str | None,
    base_url: str | None = None,
    cassette: Cassette | None = None,
    max_tokens_per_tick: int | None = None,
    retry_budget: int = DEFAULT_RETRY_BUDGET,
    run_budget: RunBudget | None = None,
    env: Mapping[str, str] = os.environ,
) -> Driver:
    """A fresh driver for one persona's day; the caller awaits `driver.aclose()` when the tick ends."""
    # The offline driver: no model, no key, no budget to spend.
    if name == "scripted":
        if model or base_url:
            raise UserError(
                "--model and --base-url apply to the LLM drivers (anthropic, openai); the scripted driver calls "
                "no model: drop them, or pass --driver"
            )
        return ScriptedDriver()
    if name not in LLM_DRIVERS:
        raise UserError(f"unknown driver {name!r}: choose one of {', '.join(DRIVERS)}")
    if not model:
        raise UserError(f"--driver {name} needs --model (the provider's model name)")
    replaying = cassette is not None and cassette.replaying
    if not replaying:
        check_keys(name, env)
    url = base_url_for(name, base_url, env)
    http_client = httpx2.AsyncClient(transport=cassette.transport()) if cassette else None
    driver = llm_driver_class(name)
    client = make_client(driver.client_class, env.get(KEY_VARIABLES[name]) or REPLAY_KEY, url, http_client)
    return driver(
        client=client,
        model=model,
        retry=RetryPolicy(budget=retry_budget),
        max_tokens_per_tick=max_tokens_per_tick,
        run_budget=run_budget,
        replaying=replaying,
    )
