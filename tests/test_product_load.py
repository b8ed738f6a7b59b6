"""The product stays up for everyone: a flood of logins or of oversized tool calls from one
client does not stall another user's requests, and load is never answered 500.

Bounded load over real HTTP on 127.0.0.1: a few hundred requests, seconds long. The only
timed assertions are the issue's: another user's requests answer within 1 s meanwhile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.product_helpers import PASSWORD, RunningProduct, running_product

pytestmark = pytest.mark.anyio

#: The issue's bound for another user's request while the product is under load.
ANSWER_WITHIN_SECONDS = 1.0
#: Bad logins the flood keeps in flight.
AT_ONCE = 40


@pytest.fixture
def product(tmp_path: Path) -> Iterator[RunningProduct]:
    # Throttled after 20 failed logins from one address: the flood below reaches the password check
    # that often, and is refused (429) from then on.
    with running_product(str(tmp_path / "p.db"), tmp_path, login_failures_per_source=20, rate_limit=10_000) as running:
        yield running


async def probe_while(
    busy: Callable[[], Awaitable[None]], probes: dict[str, Callable[[], Awaitable[None]]]
) -> dict[str, list[float]]:
    """Run `busy` and, until it ends, each probe back to back; how long every probe call took."""
    taken: dict[str, list[float]] = {name: [] for name in probes}
    done = anyio.Event()

    async def keep_probing(name: str, probe: Callable[[], Awaitable[None]]) -> None:
        while not done.is_set():
            started = time.perf_counter()
            await probe()
            taken[name].append(time.perf_counter() - started)
            await anyio.sleep(0.05)

    async with anyio.create_task_group() as group:
        for name, probe in probes.items():
            group.start_soon(keep_probing, name, probe)
        await busy()
        done.set()
    return taken


async def test_a_login_flood_leaves_other_users_answered_and_never_gets_a_500(product: RunningProduct) -> None:
    _, token, space = await product.persona("bystander@example.test")
    statuses: list[int] = []
    throttled: list[httpx2.Response] = []

    async def flood() -> None:
        async with product.http() as http:

            async def bad_login(n: int) -> None:
                answer = await http.post(
                    "/api/v1/auth/login", json={"email": f"guess{n}@example.test", "password": "wrong-password"}
                )
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    throttled.append(answer)

            limiter = anyio.CapacityLimiter(AT_ONCE)

            async def limited(n: int) -> None:
                async with limiter:
                    await bad_login(n)

            async with anyio.create_task_group() as group:
                for n in range(200):
                    group.start_soon(limited, n)

    async with product.http(Authorization=f"Bearer {token}") as http, product.mcp(token, space) as client:

        async def my_spaces() -> None:
            assert (await http.get("/api/v1/me/spaces")).status_code == 200

        async def tool_call() -> None:
            assert not (await client.call_tool("todo.list", {})).is_error

        taken = await probe_while(flood, {"me/spaces": my_spaces, "todo.list": tool_call})

    assert len(statuses) == 200 and set(statuses) <= {401, 429}, sorted(set(statuses))
    # An address counts finished failures: those already in flight when it reached its 20 still get their 401.
    assert statuses.count(401) <= 20 + AT_ONCE and throttled
    first = throttled[0]
    assert int(first.headers["retry-after"]) >= 1
    wait = first.headers["retry-after"]
    assert first.json() == {"error": f"too many failed logins from 127.0.0.1: try again in {wait} s"}
    for name, times in taken.items():
        assert times and max(times) < ANSWER_WITHIN_SECONDS, (name, max(times), len(times))


async def test_failed_logins_are_throttled_per_account_and_right_passwords_never_count(tmp_path: Path) -> None:
    with running_product(str(tmp_path / "p.db"), tmp_path, login_failures_per_source=5) as product:
        await product.persona("target@example.test")
        await product.persona("neighbour@example.test")
        async with product.http() as http:

            async def login(email: str, password: str = PASSWORD) -> httpx2.Response:
                return await http.post("/api/v1/auth/login", json={"email": email, "password": password})

            # Many more right passwords from one address than its limit of failures: none is refused.
            assert {(await login("neighbour@example.test")).status_code for _ in range(8)} == {200}
            wrong = [(await login("target@example.test", "wrong-password")).status_code for _ in range(5)]
            locked = await login("target@example.test")  # the right password, from an address now throttled
    assert wrong == [401] * 5
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert locked.json()["error"].startswith("too many failed logins from 127.0.0.1: try again in ")


async def test_personas_logging_in_all_at_once_from_one_address_are_never_throttled(tmp_path: Path) -> None:
    """A harness starts many personas together: right passwords in flight are no failures, however many."""
    emails = [f"p{n}@example.test" for n in range(8)]  # more at once than the address's limit of 5
    with running_product(str(tmp_path / "p.db"), tmp_path, login_failures_per_source=5) as product:
        for email in emails:
            await product.persona(email)
        statuses: list[int] = []
        async with product.http() as http, anyio.create_task_group() as group:

            async def login(email: str) -> None:
                answer = await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
                statuses.append(answer.status_code)

            for email in emails:
                group.start_soon(login, email)
    assert statuses == [200] * len(emails)


async def test_an_account_is_throttled_after_ten_failures_whoever_sends_them(tmp_path: Path) -> None:
    with running_product(str(tmp_path / "p.db"), tmp_path) as product:
        await product.persona("target@example.test")
        async with product.http() as http:
            answers = [
                await http.post("/api/v1/auth/login", json={"email": "Target@Example.test", "password": f"guess-{n}"})
                for n in range(11)
            ]
    assert [a.status_code for a in answers] == [401] * 10 + [429]
    assert answers[-1].json()["error"].startswith("too many failed logins for target@example.test: try again in ")


def oversized_call(fields: int) -> bytes:
    """A tools/call whose arguments hold `fields` unknown fields (200,000 make 2.7 MB)."""
    arguments = {f"f{n:06d}": 1 for n in range(fields)}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "todo.list", "arguments": arguments}}
    return json.dumps(call).encode()


async def test_oversized_tool_calls_are_refused_short_and_leave_other_users_answered(product: RunningProduct) -> None:
    _, bystander, _ = await product.persona("bystander@example.test")
    _, sender, sender_space = await product.persona("sender@example.test")
    body = oversized_call(200_000)
    assert len(body) > 2_600_000
    answers: list[httpx2.Response] = []

    async def send_oversized() -> None:
        headers = {
            "Authorization": f"Bearer {sender}",
            "X-Space": sender_space,
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        }
        async with product.http(**headers) as http, anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(lambda: _append(answers, http.post("/mcp", content=body)))

    async with product.http(Authorization=f"Bearer {bystander}") as http:

        async def my_spaces() -> None:
            assert (await http.get("/api/v1/me/spaces")).status_code == 200

        taken = await probe_while(send_oversized, {"me/spaces": my_spaces})

    assert [a.status_code for a in answers] == [413] * 4
    assert answers[0].json() == {"error": "request body too large: at most 262144 bytes; send smaller tool arguments"}
    assert taken["me/spaces"] and max(taken["me/spaces"]) < ANSWER_WITHIN_SECONDS


async def _append(into: list[httpx2.Response], answer: Awaitable[httpx2.Response]) -> None:
    into.append(await answer)


async def test_arguments_past_the_cap_and_their_problems_are_reported_in_one_short_line(
    product: RunningProduct,
) -> None:
    _, token, space = await product.persona("verbose@example.test")
    async with product.mcp(token, space) as client:
        many = await client.call_tool("todo.create", {"title": "t", **{f"f{n:05d}": 1 for n in range(15_000)}})
        some = await client.call_tool("todo.create", {"title": "t", **{f"extra{n}": 1 for n in range(30)}})
        long_tag = await client.call_tool("notes.create", {"title": "n", "tags": ["X" * 50_000]})
    assert many.is_error and many.content[0].text == (
        "arguments for todo.create are too large: at most 1000 values and 100000 characters in one call "
        "(tools/list shows each field's limits)"
    )
    assert some.is_error and some.content[0].text == (
        "invalid arguments for todo.create: extra0: unknown field; extra1: unknown field; extra2: unknown field; "
        "extra3: unknown field; extra4: unknown field; and 25 more problems"
    )
    text = long_tag.content[0].text
    assert (
        long_tag.is_error
        and text.startswith("invalid arguments for notes.create: tags.0: tags must be")
        and len(text) < 300
    ), text
