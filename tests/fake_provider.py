"""A fake model provider on 127.0.0.1 for driver tests: the real SDKs talk to it over HTTP.

It speaks the Anthropic Messages (`POST /v1/messages`) and OpenAI Chat
Completions (`POST /v1/chat/completions`) wire formats. A test scripts a queue
of provider-neutral answers (text, tool calls, usage) and failures (status,
message, headers such as Retry-After); each request takes the next one and gets
it rendered in the format of the endpoint it hit, so one script serves both
SDKs. Answers are written the way a lax provider may write them: a NaN or
Infinity in tool arguments goes out as a bare literal. Every request is kept,
with headers and body, for the test to inspect.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from persona_runner.domain import CallOutcome, Day, Driver, PersonaProfile, SpaceInfo, ToolInfo, TurnLimitReached
from persona_runner.drivers.factory import make_driver


@dataclass(frozen=True)
class Call:
    """A tool call to answer with; `raw_arguments` replaces the JSON of `arguments` on the OpenAI wire."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    raw_arguments: str | None = None


@dataclass(frozen=True)
class Answer:
    text: str = ""
    calls: tuple[Call, ...] = ()
    tokens_in: int = 10
    tokens_out: int = 5


@dataclass(frozen=True)
class Failure:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Raw:
    """A 200 answer sent exactly as given, for answers no well-behaved provider would send."""

    body: str


class LaxJSONResponse(JSONResponse):
    """JSON that may hold the bare literals NaN and Infinity, which Python's parser (and so the SDKs) accept."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class FakeProvider:
    """The script, the requests received, and the Starlette app serving them."""

    def __init__(self) -> None:
        self.script: deque[Answer | Failure | Raw] = deque()
        self.received: list[Received] = []
        self.base_url = ""
        self._ids = 0
        self.app = Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
            ]
        )

    def answer(self, text: str = "", *calls: Call, tokens_in: int = 10, tokens_out: int = 5) -> None:
        self.script.append(Answer(text, tuple(calls), tokens_in, tokens_out))

    def raw(self, body: Any) -> None:
        """Answer the next request with this JSON value (or this text, when a string) as it is."""
        self.script.append(Raw(body if isinstance(body, str) else json.dumps(body)))

    def fail(self, status: int, message: str, **headers: str) -> None:
        self.script.append(Failure(status, message, {k.replace("_", "-"): v for k, v in headers.items()}))

    async def _next(self, request: Request) -> Answer | Failure | Raw:
        self.received.append(Received(request.url.path, dict(request.headers), await request.json(), time.monotonic()))
        return (
            self.script.popleft() if self.script else Failure(500, "fake provider: nothing scripted for this request")
        )

    def _call_id(self, call: Call, prefix: str) -> str:
        self._ids += 1
        return call.id or f"{prefix}_{self._ids}"

    async def _messages(self, request: Request) -> Response:
        step = await self._next(request)
        if isinstance(step, Raw):
            return Response(step.body, media_type="application/json")
        if isinstance(step, Failure):
            body = {"type": "error", "error": {"type": "api_error", "message": step.message}}
            return JSONResponse(body, status_code=step.status, headers=step.headers)
        content: list[dict[str, Any]] = [{"type": "text", "text": step.text}] if step.text else []
        content += [
            {"type": "tool_use", "id": self._call_id(c, "toolu"), "name": c.name, "input": c.arguments}
            for c in step.calls
        ]
        return LaxJSONResponse(
            {
                "id": f"msg_{len(self.received)}",
                "type": "message",
                "role": "assistant",
                "model": (await request.json())["model"],
                "content": content,
                "stop_reason": "tool_use" if step.calls else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": step.tokens_in, "output_tokens": step.tokens_out},
            }
        )

    async def _chat(self, request: Request) -> Response:
        step = await self._next(request)
        if isinstance(step, Raw):
            return Response(step.body, media_type="application/json")
        if isinstance(step, Failure):
            body = {"error": {"message": step.message, "type": "server_error", "param": None, "code": None}}
            return JSONResponse(body, status_code=step.status, headers=step.headers)
        calls = [
            {
                "id": self._call_id(c, "call"),
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": c.raw_arguments if c.raw_arguments is not None else json.dumps(c.arguments),
                },
            }
            for c in step.calls
        ]
        message: dict[str, Any] = {"role": "assistant", "content": step.text or None}
        if calls:
            message["tool_calls"] = calls
        return LaxJSONResponse(
            {
                "id": f"chatcmpl-{len(self.received)}",
                "object": "chat.completion",
                "created": 0,
                "model": (await request.json())["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
                "usage": {
                    "prompt_tokens": step.tokens_in,
                    "completion_tokens": step.tokens_out,
                    "total_tokens": step.tokens_in + step.tokens_out,
                },
            }
        )


@contextmanager
def fake_provider() -> Iterator[FakeProvider]:
    """Serve a fresh FakeProvider on a free 127.0.0.1 port for the duration of the block."""
    fake = FakeProvider()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(fake.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake provider did not start")
        time.sleep(0.01)
    fake.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


# --- what driver tests need around the fake: a day, an act, and a driver pointed at the fake ---

#: Per provider: where its SDK expects the API root, and the key variable (fake keys only).
PROVIDERS = {
    "anthropic": ("", {"ANTHROPIC_API_KEY": "test-key-not-real"}),
    "openai": ("/v1", {"OPENAI_API_KEY": "test-key-not-real"}),
}


def make_day(
    tools: tuple[str, ...] = ("todo.create", "todo.list", "notes.create"), max_turns: int = 10, tick_id: str = "tick-1"
) -> Day:
    persona = PersonaProfile(
        name="Ada",
        email="ada@example.test",
        archetype="planner",
        system_prompt="You are Ada, a busy planner who lives by her lists.",
        module_mix={"todo": 0.7, "notes": 0.3},
    )
    infos = [
        ToolInfo(name, f"The {name} tool.", name.split(".")[0], {"type": "object", "properties": {}}) for name in tools
    ]
    return Day(
        persona=persona,
        tick_date=date(2026, 11, 23),
        seed=7,
        spaces=[SpaceInfo("space-1", "Personal", "personal", "owner")],
        tools=infos,
        max_turns=max_turns,
        tick_id=tick_id,
    )


class RecordingAct:
    """Stands in for the tick's act: records each call, fails the tools listed in `failing`."""

    def __init__(self, failing: dict[str, str] | None = None, max_calls: int = 100) -> None:
        self.failing = failing or {}
        self.max_calls = max_calls
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, tool: str, arguments: dict[str, Any], *, probe: bool = False) -> CallOutcome:
        if len(self.calls) >= self.max_calls:
            raise TurnLimitReached()
        self.calls.append((tool, arguments))
        if tool in self.failing:
            return CallOutcome(tool, arguments, "error", 1.0, error=self.failing[tool])
        return CallOutcome(tool, arguments, "ok", 1.0, text=f"{tool} done")

    def history(self) -> list[CallOutcome]:
        return [
            CallOutcome(t, a, "error" if t in self.failing else "ok", 1.0, error=self.failing.get(t))
            for t, a in self.calls
        ]


def driver_for(fake: FakeProvider, provider: str, **options: Any) -> Driver:
    """A driver built the way a run builds it, pointed at the fake."""
    suffix, env = PROVIDERS[provider]
    options.setdefault("base_url", fake.base_url + suffix)
    return make_driver(provider, model="test-model", env=env, **options)
