"""Cassettes: record a run's model exchanges, replay them with no network at all."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from persona_runner.domain import CallOutcome, Day, Verdict
from persona_runner.drivers.cassette import Cassette, first_difference, request_key
from persona_runner.drivers.factory import make_driver
from persona_runner.drivers.llm import LLMDriver, ProviderError
from persona_runner.util.errors import UserError
from tests.fake_provider import PROVIDERS, Call, FakeProvider, RecordingAct, driver_for, fake_provider, make_day

pytestmark = pytest.mark.anyio

#: Nothing listens here: in replay the drivers point at it and must never notice.
DEAD_URL = "http://127.0.0.1:9"


@pytest.fixture(params=sorted(PROVIDERS))
def provider(request: pytest.FixtureRequest) -> str:
    return request.param


def script_a_day(fake: FakeProvider) -> None:
    fake.answer("", Call("todo__create", {"title": "milk"}, id="a"), Call("notes__create", {"text": "hi"}, id="b"))
    fake.fail(429, "slow down", retry_after="0.05")
    fake.answer("Done for today.")
    fake.answer("", Call("submit_ratings", {"ratings": [{"module": "todo", "rating": 4, "notes": "ok"}]}))


def script_a_longer_day(fake: FakeProvider) -> None:
    """Three turns of tools, the second with two calls and a 429 before it, then both modules rated."""
    fake.answer("", Call("todo__create", {"title": "milk"}, id="toolu_01"))
    second = (Call("todo__list", {"open": True}, id="toolu_02"), Call("notes__create", {"text": "hi"}, id="toolu_03"))
    fake.answer("And a note.", *second)
    fake.fail(429, "slow down", retry_after="0.05")
    fake.answer("Done for today.")
    ratings = [{"module": "todo", "rating": 4, "notes": "quick"}, {"module": "notes", "rating": 2, "notes": "meh"}]
    fake.answer("", Call("submit_ratings", {"ratings": ratings}))


class ProductAct(RecordingAct):
    """Answers like a real product: every result carries an id and a timestamp minted for this run."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    async def __call__(self, tool: str, arguments: dict[str, Any], *, probe: bool = False) -> CallOutcome:
        await super().__call__(tool, arguments)
        self.ids.append(uuid.uuid4().hex)
        # A long summary first, so the id sits past what a shortened value shows from its start.
        item = {"summary": f"{tool} went through as asked; the item is stored. " * 5, "id": self.ids[-1]}
        item["created_at"] = datetime.now(UTC).isoformat()
        return CallOutcome(tool, arguments, "ok", 1.0, text=json.dumps(item))


async def live_day(
    provider: str, cassette: Cassette, act: RecordingAct, script: Callable[[FakeProvider], None] = script_a_day
) -> tuple[Verdict, list[str]]:
    with fake_provider() as fake:
        script(fake)
        driver = driver_for(fake, provider, cassette=cassette)
        day = make_day()
        await driver.play(day, act)
        verdict = await driver.rate(day, ["todo", "notes"], act.history())
        await driver.aclose()
        return verdict, [e["response"]["id"] for e in driver.exchanges]


async def replayed_day(
    provider: str, cassette: Cassette, act: RecordingAct, day: Day | None = None
) -> tuple[Verdict, list[str]]:
    driver = driver_for_replay(provider, cassette)
    day = day or make_day()
    try:
        await driver.play(day, act)
        verdict = await driver.rate(day, ["todo", "notes"], act.history())
    finally:
        await driver.aclose()
    return verdict, [e["response"]["id"] for e in driver.exchanges]


def driver_for_replay(provider: str, cassette: Cassette) -> LLMDriver:
    """No key in the environment and nothing listening: only the cassette can answer."""
    return make_driver(
        provider, model="test-model", base_url=DEAD_URL + PROVIDERS[provider][0], cassette=cassette, env={}
    )


async def test_replay_gives_the_same_calls_and_ratings_without_network(tmp_path: Path, provider: str) -> None:
    path = tmp_path / "run.cassette.jsonl"
    recorded_act = RecordingAct(failing={"notes.create": "notes are down"})
    recorded, recorded_ids = await live_day(provider, Cassette.record(path), recorded_act)

    replayed_act = RecordingAct(failing={"notes.create": "notes are down"})
    cassette = Cassette.replay(path)
    replayed, replayed_ids = await replayed_day(provider, cassette, replayed_act)

    assert (
        replayed_act.calls
        == recorded_act.calls
        == [("todo.create", {"title": "milk"}), ("notes.create", {"text": "hi"})]
    )
    assert replayed.ratings == recorded.ratings and replayed.ratings[0].rating == 4
    assert replayed_ids == recorded_ids
    assert cassette.drift == []  # the same product answered the same
    lines = path.read_text().splitlines()
    assert len(lines) == 4  # three answers and the 429 between them
    entry = json.loads(lines[0])
    assert entry["key"] == request_key(entry["request"])
    assert "test-key-not-real" not in path.read_text()


#: Per provider: the endpoint, where the persona's prompt sits, and where the first tool result's content sits.
WIRE = {
    "anthropic": ("/v1/messages", "$.body.system", "$.body.messages[2].content[0].content"),
    "openai": ("/v1/chat/completions", "$.body.messages[0].content", "$.body.messages[3].content"),
}


async def test_a_fresh_product_with_new_ids_replays_the_same_day_and_reports_the_drift(
    tmp_path: Path, provider: str
) -> None:
    path = tmp_path / "run.cassette.jsonl"
    recorded_act = ProductAct()
    recorded, recorded_ids = await live_day(provider, Cassette.record(path), recorded_act, script_a_longer_day)

    cassette = Cassette.replay(path)
    replayed_act = ProductAct()
    replayed, replayed_ids = await replayed_day(provider, cassette, replayed_act)

    assert replayed_act.calls == recorded_act.calls
    assert [name for name, _ in replayed_act.calls] == ["todo.create", "todo.list", "notes.create"]
    assert replayed.ratings == recorded.ratings and [r.rating for r in replayed.ratings] == [4, 2]
    assert replayed_ids == recorded_ids
    # Each differing result is named once, though every later request carries it again (and one is retried).
    endpoint, _, first_result = WIRE[provider]
    drift = cassette.drift
    assert [entry.split(" differs")[0] for entry in drift] == [
        f"POST {endpoint}: tool result for toolu_0{n}" for n in (1, 2, 3)
    ]
    assert drift[0].startswith(
        f"POST {endpoint}: tool result for toolu_01 differs from the recording at {first_result}: "
    )
    assert all(recorded_act.ids[n] in drift[n] and replayed_act.ids[n] in drift[n] for n in range(3))
    assert all(len(entry) < 600 for entry in drift)
    # The file keeps the requests as sent; only the key leaves out what the product answered.
    text = path.read_text()
    assert all(minted in text for minted in recorded_act.ids)
    assert all(json.loads(line)["key"] == request_key(json.loads(line)["request"]) for line in text.splitlines())


def anthropic_request(
    result: Any, is_error: bool = False, call_id: str = "toolu_01", title: str = "milk"
) -> dict[str, Any]:
    call = {"type": "tool_use", "id": call_id, "name": "todo__create", "input": {"title": title}}
    answer = {"type": "tool_result", "tool_use_id": call_id, "content": result, "is_error": is_error}
    messages = [
        {"role": "user", "content": "Go."},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [answer]},
    ]
    return {"method": "POST", "target": "/v1/messages", "body": {"model": "m", "system": "Ada", "messages": messages}}


def openai_request(result: Any, call_id: str = "call_1", title: str = "milk") -> dict[str, Any]:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "todo__create", "arguments": json.dumps({"title": title})},
    }
    messages = [
        {"role": "system", "content": "Ada"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]
    return {"method": "POST", "target": "/v1/chat/completions", "body": {"model": "m", "messages": messages}}


def test_the_key_leaves_out_what_tools_answered_and_nothing_else() -> None:
    same = request_key(anthropic_request("id 1"))
    assert request_key(anthropic_request([{"type": "text", "text": "id 2"}])) == same
    assert request_key(anthropic_request("id 1", is_error=True)) != same
    assert request_key(anthropic_request("id 1", call_id="toolu_02")) != same
    assert request_key(anthropic_request("id 1", title="eggs")) != same
    assert request_key(openai_request("id 1")) == request_key(openai_request("id 2"))
    assert request_key(openai_request("ERROR: boom")) == request_key(openai_request("ERROR: gone"))
    assert request_key(openai_request("ok")) != request_key(openai_request("ERROR: boom"))
    assert request_key(openai_request("id 1")) != request_key(openai_request("id 1", call_id="call_2"))
    assert request_key(openai_request("id 1")) != request_key(openai_request("id 1", title="eggs"))


async def test_a_replay_with_another_persona_prompt_names_the_tick_and_the_prompt(
    tmp_path: Path, provider: str
) -> None:
    path = tmp_path / "run.cassette.jsonl"
    await live_day(provider, Cassette.record(path), ProductAct(), script_a_longer_day)
    day = make_day(tick_id="tick-7")
    changed = replace(day, persona=replace(day.persona, system_prompt="You are Ada, who forgets her lists."))

    with pytest.raises(ProviderError) as caught:
        await replayed_day(provider, Cassette.replay(path), ProductAct(), changed)

    endpoint, prompt_path, _ = WIRE[provider]
    message = str(caught.value)
    assert message.startswith(f"tick tick-7: request POST {endpoint} is not in cassette ")
    assert f"first differs from the closest recorded request at {prompt_path}: " in message
    assert 'recorded "You are Ada, a busy planner' in message and 'now "You are Ada, who forgets her lists.' in message


async def test_a_replay_on_another_date_says_to_use_the_recordings_date_and_seed(tmp_path: Path, provider: str) -> None:
    path = tmp_path / "run.cassette.jsonl"
    await live_day(provider, Cassette.record(path), ProductAct(), script_a_longer_day)
    day = make_day()
    # Another weekday: the day's opening line differs; the same weekday a week on: only the system prompt.
    for later in (day.tick_date + timedelta(days=1), day.tick_date + timedelta(days=7)):
        with pytest.raises(ProviderError) as caught:
            await replayed_day(provider, Cassette.replay(path), ProductAct(), replace(day, tick_date=later))
        assert "not in cassette" in str(caught.value)
        assert str(caught.value).endswith(
            "replay with the same --date and --seed as the recording, and the same catalog"
        )


async def test_a_request_sent_more_often_than_recorded_is_a_miss(tmp_path: Path) -> None:
    path = tmp_path / "short.jsonl"
    with fake_provider() as fake:
        fake.answer("Nothing today.")
        driver = driver_for(fake, "openai", cassette=Cassette.record(path))
        await driver.play(make_day(), RecordingAct())
        await driver.aclose()
    cassette = Cassette.replay(path)
    first, second = driver_for_replay("openai", cassette), driver_for_replay("openai", cassette)
    await first.play(make_day(), RecordingAct())
    with pytest.raises(ProviderError, match="was recorded 1 time") as caught:
        await second.play(make_day(), RecordingAct())
    assert "--date" not in str(caught.value)  # the day is the recorded one; only the count differs
    await first.aclose()
    await second.aclose()


def test_missing_or_damaged_cassettes_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot read cassette"):
        Cassette.replay(tmp_path / "nope.jsonl")
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('{"key": "x"}\n')
    with pytest.raises(UserError, match="line 1"):
        Cassette.replay(damaged)
    old = tmp_path / "old.jsonl"
    request = anthropic_request("id 1")
    old.write_text(json.dumps({"key": "0" * 64, "request": request, "response": {"status": 200}}) + "\n")
    with pytest.raises(UserError, match="line 1: its key does not match its request"):
        Cassette.replay(old)
    binary = tmp_path / "binary.jsonl"
    Cassette.record(binary).append(request, {"status": 200})
    with binary.open("ab") as tail:
        tail.write(b"\xff\xfe\x00 not text\n")
    with pytest.raises(UserError) as caught:
        Cassette.replay(binary)
    assert str(caught.value).startswith(f"cassette {binary} line 2 is not a recorded exchange (")
    assert "utf-8" in str(caught.value) and "\n" not in str(caught.value)


def test_a_line_separator_inside_a_recorded_text_stays_in_its_line(tmp_path: Path) -> None:
    path = tmp_path / "separators.jsonl"
    request = anthropic_request("one\u2028two")
    Cassette.record(path).append(request, {"status": 200, "headers": {}, "body": {"text": "three\u2029four"}})
    assert Cassette.replay(path).answer(request)["body"] == {"text": "three\u2029four"}


def test_recording_replaces_an_existing_cassette_at_its_first_exchange_not_before(tmp_path: Path) -> None:
    path = tmp_path / "keep.jsonl"
    path.write_text("an earlier recording\n")
    cassette = Cassette.record(path)
    assert path.read_text() == "an earlier recording\n"
    cassette.append(anthropic_request("id 1"), {"status": 429})
    cassette.append(anthropic_request("id 1"), {"status": 200})
    assert [json.loads(line)["response"] for line in path.read_text().splitlines()] == [
        {"status": 429},
        {"status": 200},
    ]

    nested = tmp_path / "new" / "deeper" / "run.jsonl"
    cassette = Cassette.record(nested)
    assert not (tmp_path / "new").exists()
    cassette.append(anthropic_request("id 1"), {"status": 200})
    assert len(nested.read_text().splitlines()) == 1


def test_recording_where_no_file_can_be_written_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="it is a directory"):
        Cassette.record(tmp_path)
    (tmp_path / "plain").write_text("")
    with pytest.raises(UserError, match="is not a directory"):
        Cassette.record(tmp_path / "plain" / "run.jsonl")


def test_first_difference_names_the_json_path() -> None:
    assert first_difference({"a": [1, 2], "b": 1}, {"a": [1, 3], "b": 2}) == ("$.a[1]", 2, 3)
    assert first_difference({"a": [1]}, {"a": [1, 2]})[0] == "$.a[1]"  # type: ignore[index]
    assert first_difference({"a": 1}, {"a": True}) == ("$.a", 1, True)
    assert first_difference({"a": {"b": None}}, {"a": {"b": None}}) is None
