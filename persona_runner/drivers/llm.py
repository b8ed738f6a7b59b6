"""What every language-model driver shares: the day's framing, the tool loop, ratings,
retries and token accounting.

A provider driver only translates: requests and tool definitions into its wire
format, its answers into `Reply`, tool results into its next user turn. Every
decision (when the day ends, how a failing provider is retried, what a rating
answer must look like, what is counted against which budget) lives here, once,
so Claude and GPT personas are held to the same rules.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import anyio
import httpx2

from persona_runner.domain import Act, CallOutcome, Day, MindError, Rating, TurnLimitReached, Usage, Verdict
from persona_runner.drivers.budget import RunBudget
from persona_runner.drivers.cassette import CassetteMiss
from persona_runner.drivers.tool_names import ToolNames
from persona_runner.util.canonical import canonical_json
from persona_runner.util.text import counted, truncate

RATING_TOOL = "submit_ratings"
RATING_DESCRIPTION = "Rate each module you used today, once, from 1 (awful) to 5 (excellent), with a short note on why."
NOTES_LIMIT = 1000
#: How much of a tool's answer the model reads back: enough to act on, bounded so one huge
#: listing cannot eat the day's token budget.
RESULT_EXCERPT = 4000
#: The mark of a cut answer, spelled out so the model does not take a cut listing for all there is.
RESULT_CUT = " …(cut)"
MAX_OUTPUT_TOKENS = 1024
TURN_LIMIT_RESULT = "not done: the day's turn limit was reached"
#: Added to a replay miss whose first difference is the system prompt or the day's opening line:
#: both carry the date, so a replay on another day (or of another catalog) cannot match.
REPLAY_FRAMING_HINT = (
    "; that is the persona's prompt or the framing of its day:"
    " replay with the same --date and --seed as the recording, and the same catalog"
)


class ProviderError(MindError):
    """The model could not answer, so the tick fails with this message and the run carries on.

    Raised when the per-tick retry budget is spent, when the provider refuses a
    request outright (a bad key, a malformed request) or answers in a shape no
    provider of its kind uses, when a wait would outlast the tick, and in
    replay when the cassette holds no answer.
    """


@dataclass(frozen=True)
class RetryPolicy:
    """How a tick waits out a flaky provider: `budget` retries per tick, shared by all its requests."""

    budget: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Retry-After when the provider gave one, else exponential backoff with jitter.

        The jitter keeps personas that failed together from all coming back at once.
        """
        if retry_after is not None:
            return retry_after
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        return rng.uniform(ceiling / 2, ceiling)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a provider asked for: `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def provider_message(body: object, fallback: str) -> str:
    """The human part of an error body, given whole (`{"error": {"message"}}`) or as its inner `error`."""
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        body = body["error"]
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return body["message"]
    return fallback


def day_system_prompt(day: Day) -> str:
    """The persona's own prompt, then a short framing of the day it is about to live."""
    persona = day.persona
    favourites = sorted(persona.module_mix, key=lambda module: -persona.module_mix[module])
    spaces = "; ".join(f"{s.name} ({s.type}, you are {s.role})" for s in day.spaces) or "your personal space"
    framing = [
        f"Today is {day.tick_date:%A} {day.tick_date.isoformat()}.",
        f"You use the product through its tools, as {persona.name} would: only what you would really do today.",
        f"Spaces you can use: {spaces}.",
        f"Modules you favour: {', '.join(favourites) or 'none in particular'}.",
        "When you are done for the day, stop calling tools and say so in a sentence.",
    ]
    return persona.system_prompt.rstrip() + "\n\n" + "\n".join(framing)


def kickoff(day: Day) -> str:
    return f"It is {day.tick_date:%A}. Go about your day."


def rating_prompt(day: Day, modules_used: list[str], history: list[CallOutcome]) -> str:
    """Ends the day: what the persona used, and the one tool to answer with."""
    calls = Counter(day.module_of(outcome.tool) for outcome in history)
    failed = Counter(day.module_of(outcome.tool) for outcome in history if not outcome.ok)
    lines = [f"- {module}: {calls[module]} call(s), {failed[module]} failed" for module in modules_used]
    return (
        "Your day is over. Rate each module you used today, in your own voice, by calling "
        f"{RATING_TOOL} once: a rating from 1 (awful) to 5 (excellent) and a short note on why.\n"
        "What you used today:\n" + "\n".join(lines)
    )


def ratings_schema(modules_used: list[str]) -> dict[str, Any]:
    """Input schema of the rating tool: one entry per module used today, nothing else."""
    entry = {
        "type": "object",
        "properties": {
            "module": {"type": "string", "enum": list(modules_used)},
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "notes": {"type": "string", "maxLength": NOTES_LIMIT},
        },
        "required": ["module", "rating", "notes"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"ratings": {"type": "array", "items": entry}},
        "required": ["ratings"],
        "additionalProperties": False,
    }


class RatingsRejected(Exception):
    """The rating answer holds nothing usable; the message tells the model why."""


def all_finite(value: Any) -> bool:
    """Whether a JSON-like value holds only finite numbers (models can emit NaN; JSON cannot carry it)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(all_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(all_finite(item) for item in value)
    return True


def json_safe(value: Any) -> Any:
    """The value with NaN and Infinity written as the strings "NaN", "Infinity", "-Infinity".

    Used for what is sent back to the provider and kept in the transcript, both
    strict JSON; the call itself is refused as a tool error (see `all_finite`).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    return value


def parse_ratings(arguments: Any, modules_used: list[str]) -> tuple[list[Rating], list[str]]:
    """Ratings the answer supports, and flags for everything that had to be corrected.

    Unused modules are dropped, out-of-range ratings clamped, long notes cut: each
    correction is flagged on the tick. An answer with no usable rating at all is
    rejected rather than patched up, because a rating is never invented.
    """
    entries = arguments.get("ratings") if isinstance(arguments, dict) else None
    if not isinstance(entries, list):
        raise RatingsRejected("`ratings` must be a list of {module, rating, notes}")
    ratings: dict[str, Rating] = {}
    flags: list[str] = []
    for entry in entries:
        module = entry.get("module") if isinstance(entry, dict) else None
        if module not in modules_used:
            flags.append(f"rating_dropped: module {module!r} was not used today")
            continue
        if module in ratings:
            flags.append(f"rating_dropped: second rating for {module}")
            continue
        value = entry.get("rating")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            flags.append(f"rating_dropped: {module} rating {value!r} is not a number")
            continue
        rating = min(5, max(1, round(value)))
        if rating != value:
            flags.append(f"rating_clamped: {module} {value} -> {rating}")
        notes = entry.get("notes") if isinstance(entry.get("notes"), str) else ""
        if len(notes) > NOTES_LIMIT:
            flags.append(f"notes_truncated: {module} notes cut to {NOTES_LIMIT} characters")
            notes = truncate(notes, NOTES_LIMIT)
        ratings[module] = Rating(module=module, rating=rating, notes=notes)
    if not ratings:
        raise RatingsRejected(f"no valid rating for any module used today ({', '.join(modules_used)})")
    flags += [f"rating_missing: no rating for {module}" for module in modules_used if module not in ratings]
    return [ratings[module] for module in modules_used if module in ratings], flags


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model asked for; `problem` says why it cannot be carried out as asked."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw: str
    problem: str | None = None


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    content: str
    is_error: bool


@dataclass
class Reply:
    """A model answer in provider-neutral form, plus the assistant turn to append in wire form.

    `message` is None when the model said nothing at all: providers refuse an empty
    assistant turn in the history, so it is left out.
    """

    message: dict[str, Any] | None
    calls: list[ToolCall]
    text: str
    #: None when the provider did not say (some OpenAI-compatible servers).
    usage: Usage | None
    #: Why the answer stopped short of what the model meant to say (the output limit, a filter), if it did.
    cut: str | None = None

    def raw_answer(self) -> str:
        """Everything the model said, as it said it: kept when the answer cannot be used."""
        return "\n".join([self.text, *(f"{call.name} {call.raw}" for call in self.calls)]).strip()


def result_text(outcome: CallOutcome) -> str:
    """What the persona reads back from a call: its first `RESULT_EXCERPT` characters, then `RESULT_CUT`."""
    if outcome.ok:
        text = outcome.text or (canonical_json(outcome.structured) if outcome.structured is not None else "ok")
    else:
        text = outcome.error or "the call failed"
    return truncate(text, RESULT_EXCERPT + len(RESULT_CUT), RESULT_CUT)


@dataclass
class _Conversation:
    """The day so far: framing, tools as offered, turns, and results not yet sent back."""

    names: ToolNames
    system: str
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]] = field(default_factory=list)
    pending: list[ToolResult] = field(default_factory=list)


class LLMDriver:
    """A persona played by a language model for one day; subclasses speak one provider's wire format."""

    #: The provider, as `--driver` names it; each subclass sets its own (`Driver.name`, read per instance).
    name: str
    #: The SDK's async client class, built by the factory with the key and base URL.
    client_class: ClassVar[Callable[..., Any]]
    #: The SDK's exception types: an error status from the provider, and no answer at all.
    status_error: ClassVar[type[Exception]]
    connection_error: ClassVar[type[Exception]]

    def __init__(
        self,
        *,
        client: Any,
        model: str,
        retry: RetryPolicy,
        max_tokens_per_tick: int | None = None,
        run_budget: RunBudget | None = None,
        replaying: bool = False,
    ) -> None:
        """`replaying`: answers come from a cassette, so a recorded Retry-After is walked through without waiting."""
        self.model: str | None = model
        self.usage = Usage()
        self.surprises: list[str] = []
        self.exchanges: list[dict[str, Any]] = []
        self._client = client
        self._retry = retry
        self._retries_left = retry.budget
        self._max_tokens_per_tick = max_tokens_per_tick
        self._run_budget = run_budget
        self._replaying = replaying
        self._rng = random.Random()
        self._conversation: _Conversation | None = None

    # --- the wire format, one provider per subclass ---

    def tool_spec(self, name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def request(
        self, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]], forced: str | None
    ) -> dict[str, Any]:
        """The SDK call's keyword arguments; `forced` names a tool the model must call."""
        raise NotImplementedError

    async def create(self, request: dict[str, Any]) -> Any:
        raise NotImplementedError

    def reply(self, response: Any) -> Reply:
        raise NotImplementedError

    def user_turn(self, results: list[ToolResult], text: str | None) -> list[dict[str, Any]]:
        """Messages carrying tool results back (each paired to its call by id), then optional text."""
        raise NotImplementedError

    # --- the day ---

    async def aclose(self) -> None:
        """Release the SDK client's connections (the run loop calls this when the tick ends)."""
        await self._client.close()

    def _begin(self, day: Day) -> _Conversation:
        names = ToolNames((tool.name for tool in day.tools), reserved=[RATING_TOOL])
        tools = [self.tool_spec(names.provider(t.name), t.description, t.input_schema) for t in day.tools]
        self._conversation = _Conversation(names=names, system=day_system_prompt(day), tools=tools)
        return self._conversation

    async def play(self, day: Day, act: Act) -> None:
        """The tool loop: until the model stops asking, a turn limit, or a token cap ends the day."""
        talk = self._begin(day)
        text: str | None = kickoff(day)
        for _ in range(day.max_turns):
            cut_short = self._cut_short()
            if cut_short:
                self.surprises.append(f"day ended early: {cut_short}")
                return
            answer = await self._ask(day, "day", talk, text, talk.tools, None)
            text = None
            if not answer.calls:
                return
            talk.pending, limit_reached = await self._perform(talk.names, act, answer.calls)
            if limit_reached:
                break
        self.surprises.append(f"day ended at the turn limit ({day.max_turns})")

    async def _perform(self, names: ToolNames, act: Act, calls: list[ToolCall]) -> tuple[list[ToolResult], bool]:
        """Every call of one turn, in order; each result carries its own call's id and error.

        Returns the results and whether `act` said the day's turn limit was reached.
        """
        results: list[ToolResult] = []
        limit_reached = False
        for call in calls:
            if limit_reached:
                results.append(ToolResult(call.id, TURN_LIMIT_RESULT, is_error=True))
                continue
            tool = names.product(call.name)
            problem = call.problem if tool is not None else f"no tool named {call.name} is offered today"
            if not problem and not all_finite(call.arguments):
                problem = "the arguments contain NaN or Infinity, which JSON does not allow"
            if tool is None or problem:
                self.surprises.append(f"{tool or call.name}: {problem}")
                results.append(ToolResult(call.id, problem or "", is_error=True))
                continue
            try:
                outcome = await act(tool, call.arguments)
            except TurnLimitReached:
                limit_reached = True
                results.append(ToolResult(call.id, TURN_LIMIT_RESULT, is_error=True))
                continue
            results.append(ToolResult(call.id, result_text(outcome), is_error=not outcome.ok))
        return results, limit_reached

    async def rate(self, day: Day, modules_used: list[str], history: list[CallOutcome]) -> Verdict:
        """One forced `submit_ratings` request, one retry with the reason, else `rating_unparsed`.

        Asked even when a token cap cut the day short: a shortened day still ends
        with what the persona thought of it, at the cost of one small request.
        """
        if not modules_used:
            return Verdict(ratings=[])
        talk = self._conversation or self._begin(day)
        tools = [*talk.tools, self.tool_spec(RATING_TOOL, RATING_DESCRIPTION, ratings_schema(modules_used))]
        text = rating_prompt(day, modules_used, history)
        flags: list[str] = []
        raw_answer = ""
        for _ in range(2):
            answer = await self._ask(day, "rating", talk, text, tools, RATING_TOOL)
            try:
                ratings, corrections = parse_ratings(_rating_arguments(answer), modules_used)
                return Verdict(ratings=ratings, flags=flags + corrections)
            except RatingsRejected as exc:
                flags.append(f"rating_retried: {exc}")
                raw_answer = answer.raw_answer()
                talk.pending = [ToolResult(call.id, f"not accepted: {exc}", is_error=True) for call in answer.calls]
                text = f"That was not a usable rating: {exc}. Call {RATING_TOOL} once, with one entry per module."
        return Verdict(ratings=[], status="rating_unparsed", raw_answer=raw_answer, flags=flags)

    async def _ask(
        self,
        day: Day,
        phase: str,
        talk: _Conversation,
        text: str | None,
        tools: list[dict[str, Any]],
        forced: str | None,
    ) -> Reply:
        """Send the pending results and `text` as the next user turn; append the model's answer."""
        talk.messages += self.user_turn(talk.pending, text)
        talk.pending = []
        answer = await self._exchange(day, phase, self.request(talk.system, list(talk.messages), tools, forced))
        if answer.message is not None:
            talk.messages.append(answer.message)
        return answer

    # --- budgets and the provider ---

    def _cut_short(self) -> str | None:
        """Why the day must end before the next request, if it must."""
        spent = self.usage.tokens_in + self.usage.tokens_out
        if self._max_tokens_per_tick is not None and spent >= self._max_tokens_per_tick:
            return f"{spent} tokens used, the cap per tick is {self._max_tokens_per_tick}"
        if self._run_budget is not None and self._run_budget.exhausted:
            return "the token budget of the run is spent"
        return None

    async def _exchange(self, day: Day, phase: str, request: dict[str, Any]) -> Reply:
        """One model request, retried within the tick's budget; its usage is counted and it is recorded.

        The exchange is recorded however it ends, so a tick that fails on the
        provider keeps what was asked, each failed attempt, and any answer it
        could not read.
        """
        failures: list[dict[str, Any]] = []
        exchange = {
            "tick_id": day.tick_id,
            "phase": phase,
            "provider": self.name,
            "model": self.model,
            "request": request,
            "failures": failures,
        }
        self.exchanges.append(exchange)
        while True:
            try:
                response = await self.create(request)
                break
            except (self.status_error, self.connection_error, CassetteMiss) as exc:
                message, retryable, retry_after = self._diagnose(day, exc)
            except ValueError as exc:  # a 200 whose body is not JSON
                raise ProviderError(
                    f"tick {day.tick_id}: {self.name} answered something that is not JSON ({exc})"
                ) from None
            wait = self._retry.delay(len(failures), retry_after, self._rng)
            failures.append({"error": message})
            self._check_retry(day, message, retryable, retry_after, wait)
            failures[-1]["waited_s"] = round(wait, 3)
            self._retries_left -= 1
            if not self._replaying:
                await anyio.sleep(wait)
        exchange["response"] = json_safe(response.model_dump(mode="json", exclude_none=True, warnings=False))
        try:
            answer = self.reply(response)
        except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
            raise ProviderError(
                f"tick {day.tick_id}: {self.name} answered in an unexpected shape ({type(exc).__name__}: {exc});"
                " the answer is in the transcript"
            ) from None
        if answer.usage is None:
            self._note_once(
                f"{self.name} reported no token usage: the tick's token figures are 0 and the token caps cannot apply"
            )
        else:
            self._count(answer.usage)
            exchange["usage"] = {"tokens_in": answer.usage.tokens_in, "tokens_out": answer.usage.tokens_out}
        if answer.cut:
            self.surprises.append(f"an answer in the {phase} was cut short: {answer.cut}")
        return answer

    def _check_retry(self, day: Day, message: str, retryable: bool, retry_after: float | None, wait: float) -> None:
        """Raise when this failure must end the tick: not worth retrying, out of retries, or a wait too long."""
        if not retryable:
            raise ProviderError(f"tick {day.tick_id}: {self.name} refused the request: {message}")
        if self._retries_left <= 0:
            raise ProviderError(
                f"tick {day.tick_id}: {self.name} still failing after "
                f"{counted(self._retry.budget, 'retry', 'retries')}: {message}"
            )
        if retry_after is not None and retry_after > self._retry.max_delay:
            raise ProviderError(
                f"tick {day.tick_id}: {self.name} asked to retry after {retry_after:.0f} s (Retry-After), longer than"
                f" the {self._retry.max_delay:.0f} s a tick waits, so the tick fails without retrying: {message}"
            )
        if day.deadline is not None and not self._replaying and time.monotonic() + wait > day.deadline:
            waiting = (
                f"asked to wait {wait:.1f} s"
                if retry_after is not None
                else f"still failing, and the next retry would come in {wait:.1f} s"
            )
            raise ProviderError(f"tick {day.tick_id}: {self.name} {waiting}, past the tick's --timeout: {message}")

    def _note_once(self, surprise: str) -> None:
        if surprise not in self.surprises:
            self.surprises.append(surprise)

    def _diagnose(self, day: Day, exc: Exception) -> tuple[str, bool, float | None]:
        """The provider's message, whether waiting may help, and how long it asked to wait."""
        if isinstance(exc, self.status_error):
            status: int = exc.status_code  # type: ignore[attr-defined]
            message = f"{status} {provider_message(exc.body, str(exc))}"  # type: ignore[attr-defined]
            retryable = status == 429 or status >= 500  # 529 is Anthropic's "overloaded"
            return message, retryable, retry_after_seconds(exc.response.headers)  # type: ignore[attr-defined]
        miss = _cassette_miss(exc)
        if miss is not None:
            framing = miss.current in (day_system_prompt(day), kickoff(day))
            text = str(miss) + (REPLAY_FRAMING_HINT if framing else "")
            raise ProviderError(f"tick {day.tick_id}: {text}") from exc
        no_server = _no_server(exc)
        if no_server is not None:
            # Nothing answers at that address: waiting will not bring a server up, so the tick fails at once.
            raise ProviderError(
                f"tick {day.tick_id}: {self.name} server at {str(self._client.base_url).rstrip('/')} is unreachable "
                f"({no_server}); "
                "start it or fix --base-url"
            ) from exc
        return f"connection failed: {exc.__cause__ or exc}", True, None

    def _count(self, usage: Usage) -> None:
        self.usage.tokens_in += usage.tokens_in
        self.usage.tokens_out += usage.tokens_out
        if self._run_budget is not None:
            self._run_budget.add(usage)


def _cassette_miss(exc: BaseException) -> CassetteMiss | None:
    """A replay miss, raised as is or wrapped by the SDK as a connection error."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, CassetteMiss):
        cause = cause.__cause__
    return cause


def _no_server(exc: BaseException) -> str | None:
    """Why no connection could be made ("connection refused", a name that does not resolve), when none could;
    None for a connection that was made and then failed, which a retry may get past."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, httpx2.ConnectError):
        cause = cause.__cause__
    if cause is None:
        return None
    root: BaseException = cause
    while (deeper := root.__cause__ or root.__context__) is not None:
        root = deeper
    return "connection refused" if isinstance(root, ConnectionRefusedError) else str(root)


def _rating_arguments(answer: Reply) -> dict[str, Any]:
    call = next((call for call in answer.calls if call.name == RATING_TOOL), None)
    if call is None:
        raise RatingsRejected(f"the answer did not call {RATING_TOOL}")
    if call.problem:
        raise RatingsRejected(call.problem)
    return call.arguments
