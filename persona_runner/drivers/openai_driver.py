"""A persona played by GPT or any OpenAI-compatible model: the Chat Completions wire format for `LLMDriver`.

Tools go out as `{type: function, function: {name, description, parameters}}`;
each `tool_call` of an answer comes back as its own `{role: tool, tool_call_id}`
message, its content led by `ERROR: ` when the call failed. Arguments arrive as
a JSON string: one that does not parse to an object is answered as a tool
error, so the model can correct itself.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai

from persona_runner.domain import Usage
from persona_runner.drivers.cassette import TOOL_ERROR_PREFIX
from persona_runner.drivers.llm import MAX_OUTPUT_TOKENS, LLMDriver, Reply, ToolCall, ToolResult

#: The host of OpenAI's own API; any other base URL is an OpenAI-compatible server.
OPENAI_HOST = "api.openai.com"


def output_limit_field(base_url: httpx2.URL) -> str:
    """The request field that caps the answer's length on this server.

    OpenAI's own API reads `max_completion_tokens` and refuses `max_tokens` for
    its reasoning models; compatible servers (Ollama, vLLM, llama.cpp, LM Studio)
    read `max_tokens`, and some ignore the newer name.
    """
    return "max_completion_tokens" if base_url.host == OPENAI_HOST else "max_tokens"


def parse_arguments(raw: str | None) -> tuple[dict[str, Any], str | None]:
    """The call's arguments, or why they cannot be used (an empty string means no arguments)."""
    if not raw or not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        return {}, f"the arguments are not valid JSON ({exc})"
    if not isinstance(value, dict):
        return {}, "the arguments are not a JSON object"
    return value, None


#: Finish reasons that mean the answer is not what the model meant to say in full.
CUT_FINISH_REASONS = {
    "length": "it reached the output token limit",
    "content_filter": "the provider's content filter stopped it",
}


class OpenAIDriver(LLMDriver):
    name = "openai"
    client_class = openai.AsyncOpenAI
    status_error = openai.APIStatusError
    connection_error = openai.APIConnectionError

    def tool_spec(self, name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}

    def request(
        self, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]], forced: str | None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            output_limit_field(self._client.base_url): MAX_OUTPUT_TOKENS,
            "messages": [{"role": "system", "content": system}, *messages],
        }
        if tools:
            request["tools"] = tools
        if forced:
            request["tool_choice"] = {"type": "function", "function": {"name": forced}}
        return request

    async def create(self, request: dict[str, Any]) -> Any:
        return await self._client.chat.completions.create(**request)

    def reply(self, response: Any) -> Reply:
        choice = response.choices[0]
        message = choice.message
        calls: list[ToolCall] = []
        wire_calls: list[dict[str, Any]] = []
        for call in message.tool_calls or []:
            raw = call.function.arguments
            arguments, problem = parse_arguments(raw)
            calls.append(ToolCall(call.id, call.function.name, arguments, raw or "", problem))
            # The history must carry a JSON string, even where the model sent none.
            wire_calls.append(
                {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": raw or "{}"}}
            )
        assistant: dict[str, Any] = {"role": "assistant", "content": message.content}
        if wire_calls:
            assistant["tool_calls"] = wire_calls
        usage = response.usage
        known = usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None
        return Reply(
            message=assistant if message.content or wire_calls else None,
            calls=calls,
            text=message.content or "",
            usage=Usage(tokens_in=usage.prompt_tokens, tokens_out=usage.completion_tokens) if known else None,
            cut=CUT_FINISH_REASONS.get(choice.finish_reason or ""),
        )

    def user_turn(self, results: list[ToolResult], text: str | None) -> list[dict[str, Any]]:
        turn: list[dict[str, Any]] = [
            {
                "role": "tool",
                "tool_call_id": r.call_id,
                "content": (TOOL_ERROR_PREFIX if r.is_error else "") + r.content,
            }
            for r in results
        ]
        if text:
            turn.append({"role": "user", "content": text})
        return turn
