"""Cassettes: every model exchange of a run on disk, so a run can be replayed offline.

A cassette sits where the provider SDKs meet the network: an httpx2 transport
handed to the SDK client (`http_client=httpx2.AsyncClient(transport=...)`). So
it records exactly what went over the wire, works the same for every SDK, and in
replay mode there is no network below it at all.

The file is JSON lines, one per HTTP exchange:
`{"key", "request": {method, target, body}, "response": {status, headers, body}}`.
`request` is the request exactly as sent, for a developer to read. `key` is the
SHA-256 of the canonical JSON (sorted keys, no spaces) of that request with the
content of every tool result replaced by a placeholder: Anthropic `tool_result`
blocks and Chat Completions `role: tool` messages keep their type, role, call id
and failure mark (`is_error`, or the `ERROR: ` prefix a Chat Completions result
carries in place of one); only what the product answered is masked. A product
started afresh answers a replayed day with new ids and timestamps, and that must not
make the replay miss; everything else (model, system prompt, tools offered, the
model's own turns and calls, the number and order of messages) is in the key,
so a persona that takes another course still misses. Request headers are never
written: they carry the API key, and nothing the model's answer depends on.
A recording replaces an existing file at its first exchange, not before, so a
run that stops before asking the model anything leaves the old cassette whole.

A request sent several times (a retry after a 429) is answered in the recorded
order, so a replay walks through the same retries. A request the cassette never
saw is a `CassetteMiss` that shows where it first differs from the closest
recorded request, both compared masked. A request that matches but carried other
tool-result contents is answered all the same, and the first such result is
named in `Cassette.drift`, so the run can say how far the product's answers
strayed from the recording.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import httpx2

from persona_runner.util.canonical import canonical_json
from persona_runner.util.errors import UserError
from persona_runner.util.text import CUT, truncate

# Response headers the SDKs read (content type, retry hints, request ids); the rest are
# transport details (encodings, lengths, cookies) that must not be replayed.
KEPT_RESPONSE_HEADERS = ("content-type", "retry-after", "retry-after-ms", "request-id", "x-request-id")
#: What a tool result's content becomes in the key: the product's answer is not part of it.
MASKED_CONTENT = "(tool result: not part of the key)"
#: How a Chat Completions tool result says it failed (that wire has no `is_error`); the OpenAI
#: driver writes it and the key keeps it, so a failed call and a successful one never share a key.
TOOL_ERROR_PREFIX = "ERROR: "
#: How much of a value a miss or a drift shows (as JSON, the cut marked): enough to recognise it.
_SHOWN_VALUE_LENGTH = 200
#: How much shared text is kept before the point where two long texts part, when showing them.
_SHOWN_LEAD = 40
_ABSENT = object()


def tool_results(identity: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every tool result a request carries back to the model: (its JSON path, its call's id, the result itself).

    Anthropic sends them as `tool_result` blocks of a user message, Chat
    Completions as `role: tool` messages; the dicts returned are the request's own.
    """
    body = identity.get("body")
    messages = body.get("messages") if isinstance(body, dict) else None
    found: list[tuple[str, str, dict[str, Any]]] = []
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict):
            continue
        path = f"$.body.messages[{index}]"
        if message.get("role") == "tool":
            found.append((path, str(message.get("tool_call_id")), message))
        blocks = message.get("content")
        for number, block in enumerate(blocks if isinstance(blocks, list) else []):
            if isinstance(block, dict) and block.get("type") == "tool_result":
                found.append((f"{path}.content[{number}]", str(block.get("tool_use_id")), block))
    return found


def masked(identity: dict[str, Any]) -> dict[str, Any]:
    """A copy of the request with each tool result's content (text or blocks) replaced by `MASKED_CONTENT`,
    behind `TOOL_ERROR_PREFIX` when a Chat Completions result carried it."""
    copied = copy.deepcopy(identity)
    for _, _, result in tool_results(copied):
        if "content" in result:
            content = result["content"]
            failed = result.get("role") == "tool" and isinstance(content, str) and content.startswith(TOOL_ERROR_PREFIX)
            result["content"] = (TOOL_ERROR_PREFIX if failed else "") + MASKED_CONTENT
    return copied


def request_key(identity: dict[str, Any]) -> str:
    """What a request is replayed by: the SHA-256 of its masked canonical JSON."""
    return hashlib.sha256(canonical_json(masked(identity)).encode("utf-8")).hexdigest()


def _refuse_constant(name: str) -> Any:
    """`json.loads` hook: NaN, Infinity and -Infinity make a body text, not JSON."""
    raise ValueError(f"{name} is not JSON")


def _decode_body(content: bytes) -> Any:
    """JSON bodies are kept as JSON (readable, diffable); anything else as text.

    A body with NaN or Infinity (a model can emit them) is not JSON the cassette
    can write back, so it is kept as text: replay hands the SDK the same bytes.
    """
    text = content.decode("utf-8", errors="replace")
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError:
        return text


def _encode_body(body: Any) -> bytes:
    return (body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)).encode("utf-8")


async def request_identity(request: httpx2.Request) -> dict[str, Any]:
    """What makes two requests the same: method, path with query, and body (not host, not headers)."""
    content = await request.aread()
    return {"method": request.method, "target": request.url.raw_path.decode("ascii"), "body": _decode_body(content)}


class CassetteMiss(Exception):
    """A replayed run asked for something the cassette does not hold.

    `current` is the request's own value where it first differs from the closest
    recorded request (None when there is no such point), for a caller that knows
    what that value means to say more.
    """

    def __init__(self, message: str, current: Any = None) -> None:
        super().__init__(message)
        self.current = current


def first_difference(recorded: Any, current: Any, path: str = "$") -> tuple[str, Any, Any] | None:
    """The JSON path and both values where two JSON values first differ (sorted-key order)."""
    if type(recorded) is not type(current):
        return path, recorded, current
    if isinstance(recorded, dict):
        for key in sorted(recorded.keys() | current.keys()):
            found = first_difference(recorded.get(key, _ABSENT), current.get(key, _ABSENT), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(recorded, list):
        for index in range(max(len(recorded), len(current))):
            left = recorded[index] if index < len(recorded) else _ABSENT
            right = current[index] if index < len(current) else _ABSENT
            found = first_difference(left, right, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if recorded == current else (path, recorded, current)


def _leaves(value: Any) -> int:
    if value is _ABSENT:
        return 0
    if isinstance(value, dict):
        return sum(_leaves(v) for v in value.values()) or 1
    if isinstance(value, list):
        return sum(_leaves(v) for v in value) or 1
    return 1


def difference_count(recorded: Any, current: Any) -> int:
    """How many leaves differ (a missing subtree counts all its leaves): the fewest is the closest."""
    if type(recorded) is not type(current):
        return max(_leaves(recorded), _leaves(current))
    if isinstance(recorded, dict):
        keys = recorded.keys() | current.keys()
        return sum(difference_count(recorded.get(k, _ABSENT), current.get(k, _ABSENT)) for k in keys)
    if isinstance(recorded, list):
        shared = sum(difference_count(a, b) for a, b in zip(recorded, current, strict=False))
        longer = recorded if len(recorded) > len(current) else current
        return shared + sum(_leaves(v) for v in longer[min(len(recorded), len(current)) :])
    return 0 if recorded == current else 1


def _show(value: Any, start: int = 0) -> str:
    """A value as JSON for a message; a text shown from `start` is marked as cut at its start too."""
    if value is _ABSENT:
        return "(absent)"
    return truncate(canonical_json(CUT + value[start:] if start else value), _SHOWN_VALUE_LENGTH)


def _unwritable(path: Path) -> str | None:
    """Why a cassette could not be written at `path`, found without changing anything on disk."""
    if path.is_dir():
        return "it is a directory"
    if path.exists():
        return None if os.access(path, os.W_OK) else "the file is not writable"
    folder = path.parent
    while not folder.exists():  # missing folders are made on the first write
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a directory"
    return None if os.access(folder, os.W_OK | os.X_OK) else f"folder {folder} is not writable"


def _show_both(recorded: Any, current: Any) -> str:
    """`recorded X, now Y`; two texts are shown from a little before where they part, so a changed id deep
    inside a long tool result is visible rather than cut off."""
    start = 0
    if isinstance(recorded, str) and isinstance(current, str):
        shared = next(
            (i for i, (a, b) in enumerate(zip(recorded, current, strict=False)) if a != b),
            min(len(recorded), len(current)),
        )
        start = max(0, shared - _SHOWN_LEAD)
    return f"recorded {_show(recorded, start)}, now {_show(current, start)}"


class Cassette:
    """One cassette file, either being recorded or being replayed; shared by all ticks of a run."""

    def __init__(self, path: Path, replaying: bool) -> None:
        self.path = path
        self.replaying = replaying
        self._lock = threading.Lock()
        #: Per key, the recorded exchanges (`request` and `response`) not yet served, in recorded order.
        self._answers: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self._recorded: list[dict[str, Any]] = []
        self._served: dict[str, int] = defaultdict(int)
        self._drift: list[str] = []
        #: Tool calls whose result was already named in `_drift`: later requests carry it again.
        self._drifted: set[str] = set()
        #: Whether this recording has written its first exchange (and so replaced any older file).
        self._started = False

    @classmethod
    def record(cls, path: str | os.PathLike[str]) -> Cassette:
        """A cassette to record at `path`: checked writable now, an existing file replaced by the first exchange."""
        cassette = cls(Path(path), replaying=False)
        problem = _unwritable(cassette.path)
        if problem:
            raise UserError(f"cannot record cassette {path}: {problem}; pass a writable file path")
        return cassette

    @classmethod
    def replay(cls, path: str | os.PathLike[str]) -> Cassette:
        """Load a recorded cassette; a missing or damaged file is the user's to fix.

        Each key is checked against its request, so a cassette keyed by an older rule
        is refused here instead of missing on every request of the run.
        """
        cassette = cls(Path(path), replaying=True)
        try:
            data = cassette.path.read_bytes()
        except OSError as exc:
            raise UserError(
                f"cannot read cassette {path}: {exc.strerror}; record one with --cassette record PATH"
            ) from exc
        # Split as bytes: only a newline ends a line, while recorded texts may hold U+2028 and its kin.
        for number, raw in enumerate(data.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw.decode("utf-8"))
                key, request = entry["key"], entry["request"]
                exchange = {"request": request, "response": entry["response"]}
                current = request_key(request)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # ValueError covers text that is not UTF-8 as well as lines that are not JSON.
                raise UserError(
                    f"cassette {path} line {number} is not a recorded exchange ({exc}); record it again"
                ) from exc
            if key != current:
                raise UserError(
                    f"cassette {path} line {number}: its key does not match its request (an older recording, or edited)"
                    "; record it again"
                )
            cassette._answers[key].append(exchange)
            cassette._recorded.append(request)
        return cassette

    @property
    def drift(self) -> list[str]:
        """Where the product answered the replay differently from the recording: one line per differing tool result."""
        with self._lock:
            return list(self._drift)

    def transport(self) -> httpx2.AsyncBaseTransport:
        """A transport for one SDK client: the network behind a recorder, or nothing behind a player."""
        if self.replaying:
            return _PlayerTransport(self)
        return _RecorderTransport(self, httpx2.AsyncHTTPTransport())

    def append(self, identity: dict[str, Any], response: dict[str, Any]) -> None:
        """Write one exchange as one line with a single O_APPEND write, so concurrent ticks never interleave.

        The first exchange of a recording creates the file, or empties an older one.
        """
        line = canonical_json({"key": request_key(identity), "request": identity, "response": response}) + "\n"
        with self._lock:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            if not self._started:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                flags |= os.O_TRUNC
            fd = os.open(self.path, flags, 0o600)
            self._started = True
            try:
                os.write(fd, line.encode("utf-8"))
            finally:
                os.close(fd)

    def answer(self, identity: dict[str, Any]) -> dict[str, Any]:
        """The next recorded response to this request, or a `CassetteMiss` explaining the difference."""
        key = request_key(identity)
        with self._lock:
            queue = self._answers.get(key)
            if queue:
                self._served[key] += 1
                recorded = queue.popleft()
                self._note_drift(recorded["request"], identity)
                return recorded["response"]
            if self._served[key]:
                raise CassetteMiss(
                    f"request {identity['method']} {identity['target']} was recorded {self._served[key]} time(s)"
                    f" and is now sent once more (cassette {self.path})"
                )
        raise self._miss(identity)

    def _note_drift(self, recorded: dict[str, Any], current: dict[str, Any]) -> None:
        """Name the first tool result of this request whose content differs from the recording, unless named before.

        The caller holds the lock. Requests with the same key carry the same tool
        results in the same places, so they pair up in order.
        """
        for (path, call_id, then), (_, _, now) in zip(tool_results(recorded), tool_results(current), strict=True):
            if call_id in self._drifted:
                continue
            found = first_difference(then.get("content", _ABSENT), now.get("content", _ABSENT), f"{path}.content")
            if found:
                where, old, new = found
                self._drifted.add(call_id)
                self._drift.append(
                    f"{current['method']} {current['target']}: tool result for {call_id} differs from the recording"
                    f" at {where}: {_show_both(old, new)}"
                )
                return

    def _miss(self, identity: dict[str, Any]) -> CassetteMiss:
        """The closest recorded request and where it first differs, both masked as the key masks them."""
        head = f"request {identity['method']} {identity['target']} is not in cassette {self.path}"
        if not self._recorded:
            return CassetteMiss(f"{head} (the cassette is empty)")
        current = masked(identity)
        closest = min(
            (masked(recorded) for recorded in self._recorded), key=lambda recorded: difference_count(recorded, current)
        )
        where, recorded, now = first_difference(closest, current) or ("$", None, None)
        return CassetteMiss(
            f"{head}; it first differs from the closest recorded request at {where}: {_show_both(recorded, now)}", now
        )


def _response(request: httpx2.Request, status: int, headers: dict[str, str], body: Any) -> httpx2.Response:
    return httpx2.Response(status, headers=headers, content=_encode_body(body), request=request)


class _RecorderTransport(httpx2.AsyncBaseTransport):
    """Sends to the network, writes the exchange, and hands the SDK what was written."""

    def __init__(self, cassette: Cassette, inner: httpx2.AsyncBaseTransport) -> None:
        self._cassette = cassette
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        identity = await request_identity(request)
        live = await self._inner.handle_async_request(request)
        try:
            body = _decode_body(await live.aread())
        finally:
            await live.aclose()
        headers = {name: live.headers[name] for name in KEPT_RESPONSE_HEADERS if name in live.headers}
        self._cassette.append(identity, {"status": live.status_code, "headers": headers, "body": body})
        # The SDK gets the recorded form, so recording and replaying behave the same.
        return _response(request, live.status_code, headers, body)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _PlayerTransport(httpx2.AsyncBaseTransport):
    """Answers from the cassette; there is no network below it."""

    def __init__(self, cassette: Cassette) -> None:
        self._cassette = cassette

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        recorded = self._cassette.answer(await request_identity(request))
        return _response(request, recorded["status"], recorded["headers"], recorded["body"])
