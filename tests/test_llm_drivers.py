"""The Anthropic and OpenAI drivers, through the real SDKs, against a fake provider over HTTP."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from persona_runner.drivers import DRIVERS
from persona_runner.drivers.budget import RunBudget
from persona_runner.drivers.cassette import Cassette
from persona_runner.drivers.factory import (
    LLM_DRIVERS,
    base_url_for,
    check_keys,
    llm_driver_class,
    make_client,
    make_driver,
)
from persona_runner.drivers.llm import MAX_OUTPUT_TOKENS, LLMDriver, ProviderError, RetryPolicy, retry_after_seconds
from persona_runner.drivers.scripted import ScriptedDriver
from persona_runner.util.errors import UserError
from tests.fake_provider import PROVIDERS, Call, FakeProvider, RecordingAct, driver_for, fake_provider, make_day

pytestmark = pytest.mark.anyio

RATE_BOTH = Call(
    "submit_ratings",
    {"ratings": [{"module": "todo", "rating": 4, "notes": "quick"}, {"module": "notes", "rating": 3, "notes": "fine"}]},
)


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with fake_provider() as server:
        yield server


def fast_retry_driver(fake: FakeProvider, provider: str, budget: int, base_url: str | None = None) -> LLMDriver:
    """A driver whose backoff is milliseconds, so budget tests stay quick."""
    suffix, env = PROVIDERS[provider]
    client = make_client(
        llm_driver_class(provider).client_class, next(iter(env.values())), base_url or fake.base_url + suffix, None
    )
    policy = RetryPolicy(budget=budget, base_delay=0.01, max_delay=1.0)
    return llm_driver_class(provider)(client=client, model="test-model", retry=policy)


def sent_results(provider: str, body: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Tool results in a request, by call id: (content, is_error), whatever the wire format."""
    if provider == "anthropic":
        blocks = [
            block
            for message in body["messages"]
            if message["role"] == "user" and isinstance(message["content"], list)
            for block in message["content"]
            if block["type"] == "tool_result"
        ]
        return {b["tool_use_id"]: (b["content"], b["is_error"]) for b in blocks}
    tools = [m for m in body["messages"] if m["role"] == "tool"]
    return {
        m["tool_call_id"]: (m["content"].removeprefix("ERROR: "), m["content"].startswith("ERROR: ")) for m in tools
    }


def forced_tool(provider: str, body: dict[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    if not choice:
        return None
    return choice["name"] if provider == "anthropic" else choice["function"]["name"]


async def test_multi_turn_day_then_ratings(fake: FakeProvider, provider: str) -> None:
    fake.answer("Let me look at my list.", Call("todo__list", {}, id="c1"))
    fake.answer("", Call("todo__create", {"title": "buy milk"}, id="c2"))
    fake.answer("", Call("notes__create", {"text": "milk is bought"}, id="c3"))
    fake.answer("That is all for today.")
    fake.answer("", RATE_BOTH, tokens_in=40, tokens_out=20)
    driver, day, act = driver_for(fake, provider), make_day(), RecordingAct()

    await driver.play(day, act)
    verdict = await driver.rate(day, ["todo", "notes"], act.history())
    await driver.aclose()

    assert act.calls == [
        ("todo.list", {}),
        ("todo.create", {"title": "buy milk"}),
        ("notes.create", {"text": "milk is bought"}),
    ]
    assert [(r.module, r.rating, r.notes) for r in verdict.ratings] == [("todo", 4, "quick"), ("notes", 3, "fine")]
    assert verdict.status == "ok" and verdict.flags == []
    assert len(fake.received) == 5
    assert sent_results(provider, fake.received[1].body) == {"c1": ("todo.list done", False)}
    assert sent_results(provider, fake.received[3].body)["c3"] == ("notes.create done", False)
    assert forced_tool(provider, fake.received[4].body) == "submit_ratings"
    assert (driver.usage.tokens_in, driver.usage.tokens_out) == (4 * 10 + 40, 4 * 5 + 20)
    assert [e["phase"] for e in driver.exchanges] == ["day"] * 4 + ["rating"]
    assert all(e["tick_id"] == "tick-1" for e in driver.exchanges)
    assert driver.surprises == []


async def test_day_framing_carries_persona_date_spaces_and_favourites(fake: FakeProvider, provider: str) -> None:
    fake.answer("Nothing to do today.")
    driver = driver_for(fake, provider)
    await driver.play(make_day(), RecordingAct())
    await driver.aclose()
    body = fake.received[0].body
    system = body["system"] if provider == "anthropic" else body["messages"][0]["content"]
    assert system.startswith("You are Ada, a busy planner")
    for fact in ("2026-11-23", "Monday", "Personal", "todo, notes"):
        assert fact in system


async def test_parallel_calls_pair_each_result_with_its_own_call(fake: FakeProvider, provider: str) -> None:
    fake.answer(
        "",
        Call("todo__create", {"title": "a"}, id="first"),
        Call("notes__create", {"text": "b"}, id="second"),
        Call("todo__list", {}, id="third"),
    )
    fake.answer("Done.")
    driver, act = driver_for(fake, provider), RecordingAct(failing={"notes.create": "notes are read-only today"})

    await driver.play(make_day(), act)
    await driver.aclose()

    assert [tool for tool, _ in act.calls] == ["todo.create", "notes.create", "todo.list"]
    assert sent_results(provider, fake.received[1].body) == {
        "first": ("todo.create done", False),
        "second": ("notes are read-only today", True),
        "third": ("todo.list done", False),
    }


async def test_429_waits_for_retry_after_then_succeeds(fake: FakeProvider, provider: str) -> None:
    fake.fail(429, "slow down", retry_after="0.2")
    fake.answer("Fine, done.")
    driver = driver_for(fake, provider)

    await driver.play(make_day(), RecordingAct())
    await driver.aclose()

    assert len(fake.received) == 2
    assert fake.received[1].at - fake.received[0].at >= 0.2
    assert driver.exchanges[0]["failures"] == [{"error": "429 slow down", "waited_s": 0.2}]


async def test_a_retry_after_longer_than_a_tick_waits_fails_the_tick_at_once_and_says_why(
    fake: FakeProvider, provider: str
) -> None:
    fake.fail(429, "slow down", retry_after="120")
    driver = driver_for(fake, provider)

    with pytest.raises(ProviderError) as caught:
        await driver.play(make_day(), RecordingAct())
    await driver.aclose()

    assert len(fake.received) == 1
    assert str(caught.value) == (
        f"tick tick-1: {provider} asked to retry after 120 s (Retry-After), longer than the 60 s a tick waits,"
        " so the tick fails without retrying: 429 slow down"
    )


async def test_server_errors_until_the_budget_is_spent_fail_with_the_providers_message(
    fake: FakeProvider, provider: str
) -> None:
    fake.fail(529, "overloaded")
    fake.fail(503, "unavailable")
    fake.fail(500, "the model fell over")
    driver = fast_retry_driver(fake, provider, budget=2)

    with pytest.raises(ProviderError) as caught:
        await driver.play(make_day(), RecordingAct())
    await driver.aclose()

    assert len(fake.received) == 3
    assert str(caught.value) == f"tick tick-1: {provider} still failing after 2 retries: 500 the model fell over"
    # The transcript keeps what was asked and every failed attempt, though no answer came.
    [exchange] = driver.exchanges
    assert [f["error"] for f in exchange["failures"]] == [
        "529 overloaded",
        "503 unavailable",
        "500 the model fell over",
    ]
    assert "response" not in exchange and exchange["request"]["model"] == "test-model"


async def test_a_refused_request_is_not_retried(fake: FakeProvider, provider: str) -> None:
    fake.fail(400, "messages: bad shape")
    driver = fast_retry_driver(fake, provider, budget=3)
    with pytest.raises(ProviderError, match="bad shape"):
        await driver.play(make_day(), RecordingAct())
    await driver.aclose()
    assert len(fake.received) == 1


@contextmanager
def hanging_up() -> Iterator[str]:
    """A server on 127.0.0.1 that takes every connection and closes it unanswered; its base URL."""
    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                listener.accept()[0].close()

    threading.Thread(target=hang_up, daemon=True).start()
    with listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


async def test_connection_errors_are_retried_within_the_budget(fake: FakeProvider, provider: str) -> None:
    with hanging_up() as url:
        driver = fast_retry_driver(fake, provider, budget=1, base_url=url + PROVIDERS[provider][0])
        with pytest.raises(ProviderError, match="connection failed") as caught:
            await driver.play(make_day(), RecordingAct())
        await driver.aclose()
    assert "after 1 retry:" in str(caught.value)


async def test_a_server_that_is_not_there_fails_the_tick_at_once_as_unreachable(
    fake: FakeProvider, provider: str
) -> None:
    base_url = "http://127.0.0.1:9" + PROVIDERS[provider][0]
    driver = fast_retry_driver(fake, provider, budget=3, base_url=base_url)
    with pytest.raises(ProviderError) as caught:
        await driver.play(make_day(), RecordingAct())
    await driver.aclose()
    assert str(caught.value) == (
        f"tick tick-1: {provider} server at {base_url} is unreachable (connection refused); start it or fix --base-url"
    )


async def test_a_rating_answer_without_the_tool_is_retried_then_unparsed(fake: FakeProvider, provider: str) -> None:
    fake.answer("I'd say todo was a solid four.")
    fake.answer("Honestly, four for todo.")
    driver = driver_for(fake, provider)

    verdict = await driver.rate(make_day(), ["todo"], [])
    await driver.aclose()

    assert verdict.status == "rating_unparsed"
    assert verdict.ratings == []
    assert verdict.raw_answer == "Honestly, four for todo."
    assert len(fake.received) == 2 and "not a usable rating" in str(fake.received[1].body["messages"][-1])
    assert driver.exchanges[0]["response"] and driver.exchanges[1]["phase"] == "rating"


async def test_a_bad_rating_call_is_answered_and_the_retry_accepted(fake: FakeProvider, provider: str) -> None:
    fake.answer("", Call("submit_ratings", {"ratings": [{"module": "calendar", "rating": 5, "notes": "?"}]}, id="bad"))
    fake.answer("", Call("submit_ratings", {"ratings": [{"module": "todo", "rating": 2, "notes": "slow"}]}, id="good"))
    driver = driver_for(fake, provider)

    verdict = await driver.rate(make_day(), ["todo"], [])
    await driver.aclose()

    assert [(r.module, r.rating) for r in verdict.ratings] == [("todo", 2)]
    assert verdict.status == "ok"
    assert verdict.flags[0].startswith("rating_retried:")
    content, is_error = sent_results(provider, fake.received[1].body)["bad"]
    assert is_error and "not accepted" in content


async def test_out_of_range_ratings_are_clamped_and_unused_modules_dropped(fake: FakeProvider, provider: str) -> None:
    ratings = [
        {"module": "todo", "rating": 9, "notes": "love it"},
        {"module": "notes", "rating": 0, "notes": "x" * 1500},
        {"module": "calendar", "rating": 3, "notes": "never opened it"},
    ]
    fake.answer("", Call("submit_ratings", {"ratings": ratings}))
    driver = driver_for(fake, provider)

    verdict = await driver.rate(make_day(), ["todo", "notes"], [])
    await driver.aclose()

    assert [(r.module, r.rating) for r in verdict.ratings] == [("todo", 5), ("notes", 1)]
    assert len(verdict.ratings[1].notes) == 1000
    assert "rating_clamped: todo 9 -> 5" in verdict.flags
    assert "rating_clamped: notes 0 -> 1" in verdict.flags
    assert "rating_dropped: module 'calendar' was not used today" in verdict.flags
    schema = fake.received[0].body["tools"][-1]
    schema = schema["input_schema"] if provider == "anthropic" else schema["function"]["parameters"]
    assert schema["properties"]["ratings"]["items"]["properties"]["module"]["enum"] == ["todo", "notes"]


async def test_no_modules_used_means_no_rating_request(fake: FakeProvider, provider: str) -> None:
    driver = driver_for(fake, provider)
    verdict = await driver.rate(make_day(), [], [])
    await driver.aclose()
    assert verdict.ratings == [] and verdict.status == "ok" and fake.received == []


async def test_token_cap_per_tick_ends_the_day_early(fake: FakeProvider, provider: str) -> None:
    for _ in range(3):
        fake.answer("", Call("todo__list", {}))
    fake.answer("", RATE_BOTH)
    driver, act, day = driver_for(fake, provider, max_tokens_per_tick=25), RecordingAct(), make_day()

    await driver.play(day, act)
    verdict = await driver.rate(day, ["todo"], act.history())
    await driver.aclose()

    assert len(act.calls) == 2  # 15 tokens after the first answer, 30 after the second
    assert driver.surprises == ["day ended early: 30 tokens used, the cap per tick is 25"]
    assert verdict.status == "ok"  # the day ends early; the persona still says what it thought
    assert len(sent_results(provider, fake.received[2].body)) == 2


async def test_run_budget_is_shared_and_stops_the_next_day(fake: FakeProvider, provider: str) -> None:
    budget = RunBudget(max_tokens=20)
    fake.answer("", Call("todo__list", {}))
    fake.answer("", Call("todo__list", {}))
    first = driver_for(fake, provider, run_budget=budget)
    await first.play(make_day(), RecordingAct())
    await first.aclose()
    assert budget.spent == 30 and budget.exhausted
    assert "30 of 20" in budget.describe()

    second = driver_for(fake, provider, run_budget=budget)
    await second.play(make_day(tick_id="tick-2"), RecordingAct())
    await second.aclose()
    assert len(fake.received) == 2
    assert second.surprises == ["day ended early: the token budget of the run is spent"]


async def test_turn_limit_answers_the_calls_it_did_not_make(fake: FakeProvider, provider: str) -> None:
    fake.answer("", Call("todo__create", {"title": "a"}, id="done"), Call("todo__create", {"title": "b"}, id="skipped"))
    fake.answer("", Call("submit_ratings", {"ratings": [{"module": "todo", "rating": 3, "notes": "ok"}]}))
    driver, act, day = driver_for(fake, provider), RecordingAct(max_calls=1), make_day(max_turns=1)

    await driver.play(day, act)
    await driver.rate(day, ["todo"], act.history())
    await driver.aclose()

    assert act.calls == [("todo.create", {"title": "a"})]
    results = sent_results(provider, fake.received[1].body)
    assert results["done"] == ("todo.create done", False)
    assert results["skipped"][1] is True and "turn limit" in results["skipped"][0]
    assert driver.surprises == ["day ended at the turn limit (1)"]


async def test_unknown_tools_are_reported_to_the_model_not_performed(fake: FakeProvider, provider: str) -> None:
    fake.answer("", Call("todo__delete_everything", {}, id="ghost"))
    fake.answer("Oh well.")
    driver, act = driver_for(fake, provider), RecordingAct()
    await driver.play(make_day(), act)
    await driver.aclose()
    assert act.calls == []
    assert sent_results(provider, fake.received[1].body)["ghost"][1] is True
    assert driver.surprises == ["todo__delete_everything: no tool named todo__delete_everything is offered today"]


async def test_unparseable_openai_arguments_are_a_tool_error_and_recorded(fake: FakeProvider) -> None:
    fake.answer(
        "", Call("todo__create", id="broken", raw_arguments='{"title": "milk'), Call("todo__list", {}, id="fine")
    )
    fake.answer("Done.")
    driver, act = driver_for(fake, "openai"), RecordingAct()

    await driver.play(make_day(), act)
    await driver.aclose()

    assert act.calls == [("todo.list", {})]
    results = sent_results("openai", fake.received[1].body)
    assert results["broken"][1] is True and "not valid JSON" in results["broken"][0]
    assert results["fine"] == ("todo.list done", False)
    assert driver.surprises[0].startswith("todo.create: the arguments are not valid JSON")


async def test_a_nan_in_one_call_fails_that_call_alone_and_the_day_goes_on(
    fake: FakeProvider, provider: str, tmp_path: Path
) -> None:
    fake.answer(
        "", Call("todo__create", {"title": "a", "priority": float("nan")}, id="bad"), Call("todo__list", {}, id="fine")
    )
    fake.answer("Done.")
    path = tmp_path / "nan.jsonl"
    driver, act = driver_for(fake, provider, cassette=Cassette.record(path)), RecordingAct()

    await driver.play(make_day(), act)
    await driver.aclose()

    assert act.calls == [("todo.list", {})]
    results = sent_results(provider, fake.received[1].body)
    assert results["bad"] == ("the arguments contain NaN or Infinity, which JSON does not allow", True)
    assert results["fine"] == ("todo.list done", False)
    json.dumps(driver.exchanges, allow_nan=False)  # the transcript stays strict JSON
    # The cassette holds the answer as sent, NaN and all, and replays the same day.
    replayed_act = RecordingAct()
    suffix = PROVIDERS[provider][0]
    replay = make_driver(
        provider, model="test-model", base_url="http://127.0.0.1:9" + suffix, cassette=Cassette.replay(path), env={}
    )
    await replay.play(make_day(), replayed_act)
    await replay.aclose()
    assert replayed_act.calls == act.calls


async def test_openai_caps_the_answer_with_the_field_its_server_reads(fake: FakeProvider) -> None:
    fake.answer("Nothing today.")
    compatible = driver_for(fake, "openai")
    await compatible.play(make_day(), RecordingAct())
    await compatible.aclose()
    official = make_driver("openai", model="test-model", env={"OPENAI_API_KEY": "test-key-not-real"})
    request = official.request("You are Ada.", [], [], None)  # built, never sent
    await official.aclose()

    assert (
        fake.received[0].body["max_tokens"] == MAX_OUTPUT_TOKENS
        and "max_completion_tokens" not in fake.received[0].body
    )
    assert request["max_completion_tokens"] == MAX_OUTPUT_TOKENS and "max_tokens" not in request


def test_a_base_url_without_scheme_or_host_is_one_line_up_front() -> None:
    for bad in (
        "localhost:11434/v1",
        "127.0.0.1:11434",
        "ftp://127.0.0.1/v1",
        "http:///v1",
        "http://127.0.0.1:port/v1",
    ):
        with pytest.raises(UserError) as caught:
            base_url_for("openai", bad, {})
        assert str(caught.value).startswith(
            f"--base-url {bad!r} is not an http(s) URL with a host"
        ) and "\n" not in str(caught.value)
    with pytest.raises(UserError, match=r"^ANTHROPIC_BASE_URL 'localhost:8080' is not"):
        make_driver(
            "anthropic",
            model="m",
            env={"ANTHROPIC_API_KEY": "test-key-not-real", "ANTHROPIC_BASE_URL": "localhost:8080"},
        )
    assert (
        base_url_for("openai", "https://llm.example.test/v1", {"OPENAI_BASE_URL": "bad"})
        == "https://llm.example.test/v1"
    )
    assert base_url_for("openai", None, {"OPENAI_BASE_URL": "http://127.0.0.1:11434/v1"}) == "http://127.0.0.1:11434/v1"
    assert base_url_for("openai", None, {}) is None


def test_retry_after_as_seconds_milliseconds_or_http_date() -> None:
    assert retry_after_seconds({"retry-after": "0.2"}) == 0.2
    assert retry_after_seconds({"retry-after-ms": "150", "retry-after": "9"}) == 0.15
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 28 <= (retry_after_seconds({"retry-after": later}) or 0) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_grows_with_jitter_and_stays_under_the_ceiling() -> None:
    policy, rng = RetryPolicy(base_delay=1.0, max_delay=5.0), random.Random(1)
    delays = [policy.delay(attempt, None, rng) for attempt in range(6)]
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0
    assert all(2.5 <= d <= 5.0 for d in delays[3:])


def test_missing_key_is_one_line() -> None:
    with pytest.raises(UserError) as caught:
        check_keys("anthropic", {})
    assert "ANTHROPIC_API_KEY" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(UserError, match="OPENAI_API_KEY"):
        make_driver("openai", model="m", env={})
    check_keys("openai", {"OPENAI_API_KEY": "test-key-not-real"})


def test_unknown_driver_and_missing_model_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown driver"):
        make_driver("gemini", model="m", env={})
    with pytest.raises(UserError, match="--model"):
        make_driver("anthropic", model=None, env={"ANTHROPIC_API_KEY": "k"})


def test_every_driver_the_help_lists_can_be_built() -> None:
    """`run --help` lists the names declared apart from the SDKs; each one is a driver the factory builds."""
    assert ("scripted", *LLM_DRIVERS) == DRIVERS
    assert isinstance(make_driver("scripted", model=None, env={}), ScriptedDriver)


async def test_an_empty_answer_is_left_out_of_the_history(fake: FakeProvider, provider: str) -> None:
    fake.answer("", Call("todo__list", {}, id="c1"))
    fake.answer("")
    fake.answer("", Call("submit_ratings", {"ratings": [{"module": "todo", "rating": 3, "notes": "ok"}]}))
    driver, act, day = driver_for(fake, provider), RecordingAct(), make_day()

    await driver.play(day, act)
    verdict = await driver.rate(day, ["todo"], act.history())
    await driver.aclose()

    assert verdict.status == "ok"
    assistant_turns = [m for m in fake.received[2].body["messages"] if m["role"] == "assistant"]
    assert len(assistant_turns) == 1 and (assistant_turns[0]["content"] or assistant_turns[0]["tool_calls"])


def test_non_finite_numbers_from_the_model_are_refused_not_recorded() -> None:
    from persona_runner.drivers.llm import all_finite, parse_ratings

    assert all_finite({"a": [1, 2.5, {"b": "x"}]})
    assert not all_finite({"a": [1, float("nan")]})
    assert not all_finite({"n": float("inf")})
    ratings, flags = parse_ratings(
        {
            "ratings": [
                {"module": "todo", "rating": float("nan"), "notes": ""},
                {"module": "notes", "rating": 4, "notes": "ok"},
            ]
        },
        ["todo", "notes"],
    )
    assert [(r.module, r.rating) for r in ratings] == [("notes", 4)]
    assert any(flag.startswith("rating_dropped: todo") for flag in flags)


# --- answers no well-behaved provider sends ---------------------------------------------

ODD_SHAPES = {
    "anthropic": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "end_turn"},
    "openai": {"id": "c1", "object": "chat.completion", "created": 0, "model": "m", "choices": []},
}


async def test_an_answer_of_an_unexpected_shape_fails_the_tick_and_is_kept(fake: FakeProvider, provider: str) -> None:
    fake.raw(ODD_SHAPES[provider])
    driver = driver_for(fake, provider)
    with pytest.raises(ProviderError, match=rf"^tick tick-1: {provider} answered in an unexpected shape \("):
        await driver.play(make_day(), RecordingAct())
    await driver.aclose()
    assert driver.exchanges[0]["response"]["id"] == ODD_SHAPES[provider]["id"]


async def test_an_answer_that_is_not_json_fails_the_tick_in_one_line(fake: FakeProvider, provider: str) -> None:
    fake.raw("<html>gateway</html>")
    driver = driver_for(fake, provider)
    with pytest.raises(ProviderError, match=rf"^tick tick-1: {provider} answered something that is not JSON"):
        await driver.play(make_day(), RecordingAct())
    await driver.aclose()


async def test_a_wait_past_the_ticks_deadline_fails_at_once_with_the_providers_message(
    fake: FakeProvider, provider: str
) -> None:
    fake.fail(429, "40k tokens per minute exceeded", retry_after="3")
    driver = driver_for(fake, provider)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await driver.play(replace(make_day(), deadline=started + 1.0), RecordingAct())
    await driver.aclose()
    assert time.monotonic() - started < 2.5  # it did not sit out the 3 s
    assert (
        str(caught.value)
        == f"tick tick-1: {provider} asked to wait 3.0 s, past the tick's --timeout: 429 40k tokens per minute exceeded"
    )


OPENAI_NO_USAGE = {
    "id": "c1", "object": "chat.completion", "created": 0, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "todo__list", "arguments": None}}]},
        "finish_reason": "length"}],
}  # fmt: skip


async def day_after_raw_answer(
    fake: FakeProvider, provider: str, body: dict[str, Any]
) -> tuple[LLMDriver, RecordingAct]:
    """A day whose first answer is `body` as it is, and whose second ends the day."""
    fake.raw(body)
    fake.answer("done for today")
    driver = driver_for(fake, provider)
    act = RecordingAct()
    await driver.play(make_day(), act)
    await driver.aclose()
    assert isinstance(driver, LLMDriver)
    return driver, act


async def test_openai_odd_but_usable_answers_are_carried_out_and_noted(fake: FakeProvider) -> None:
    driver, act = await day_after_raw_answer(fake, "openai", OPENAI_NO_USAGE)
    assert act.calls == [("todo.list", {})]
    # The history sent back holds the arguments as a JSON string, as Chat Completions requires.
    sent = fake.received[1].body["messages"]
    assert [m["tool_calls"][0]["function"]["arguments"] for m in sent if m.get("tool_calls")] == ["{}"]
    assert (driver.usage.tokens_in, driver.usage.tokens_out) == (10, 5)  # the second answer's; the first reported none
    assert (
        "openai reported no token usage: the tick's token figures are 0 and the token caps cannot apply"
        in driver.surprises
    )
    assert "an answer in the day was cut short: it reached the output token limit" in driver.surprises


ANTHROPIC_ARGUMENTS_NOT_AN_OBJECT = {
    "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "tool_use",
    "content": [{"type": "tool_use", "id": "toolu_1", "name": "todo__create", "input": "{bad"}],
    "usage": {"input_tokens": 7, "output_tokens": 3},
}  # fmt: skip


async def test_anthropic_arguments_that_are_not_an_object_are_that_calls_error(fake: FakeProvider) -> None:
    driver, act = await day_after_raw_answer(fake, "anthropic", ANTHROPIC_ARGUMENTS_NOT_AN_OBJECT)
    assert act.calls == []
    assert sent_results("anthropic", fake.received[1].body) == {
        "toolu_1": ("the arguments are not a JSON object", True)
    }
    history = [block for m in fake.received[1].body["messages"] if m["role"] == "assistant" for block in m["content"]]
    assert history == [{"type": "tool_use", "id": "toolu_1", "name": "todo__create", "input": {}}]
    assert (driver.usage.tokens_in, driver.usage.tokens_out) == (17, 8)


def test_a_scripted_run_never_loads_a_provider_sdk() -> None:
    """Soaks and workers play scripted personas for hours: the SDKs would cost each process ~50 MB for nothing."""
    probe = (
        "import sys; from persona_runner.drivers.factory import make_driver; make_driver('scripted', model=None);"
        " import persona_runner.commands.worker, persona_runner.run.worker;"
        " print(sorted(m for m in ('anthropic', 'openai') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
