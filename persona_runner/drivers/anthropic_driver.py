"""A persona played by Claude: the Messages API wire format for `LLMDriver`.

Tools go out as `{name, description, input_schema}`; each `tool_use` block of
an answer comes back in the next user turn as a `tool_result` block with the
same `tool_use_id`, `is_error` set on that block alone.
"""

from __future__ import annotations

from typing import Any

import anthropic

from persona_runner.domain import Usage
from persona_runner.drivers.llm import MAX_OUTPUT_TOKENS, LLMDriver, Reply, ToolCall, ToolResult, json_safe
from persona_runner.util.canonical import canonical_json

#: Stop reasons that mean the answer is not what the model meant to say in full.
CUT_STOP_REASONS = {"max_tokens": "it reached the output token limit", "refusal": "the model refused to go on"}


def _usage(usage: Any) -> Usage | None:
    if usage is None or usage.input_tokens is None or usage.output_tokens is None:
        return None
    cached = (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
    return Usage(tokens_in=usage.input_tokens + cached, tokens_out=usage.output_tokens)


class AnthropicDriver(LLMDriver):
    name = "anthropic"
    client_class = anthropic.AsyncAnthropic
    status_error = anthropic.APIStatusError
    connection_error = anthropic.APIConnectionError

    def tool_spec(self, name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "description": description, "input_schema": schema}

    def request(
        self, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]], forced: str | None
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": MAX_OUTPUT_TOKENS,
            "system": system,
            "messages": messages,
        }
        if tools:
            request["tools"] = tools
        if forced:
            request["tool_choice"] = {"type": "tool", "name": forced}
        return request

    async def create(self, request: dict[str, Any]) -> Any:
        return await self._client.messages.create(**request)

    def reply(self, response: Any) -> Reply:
        content: list[dict[str, Any]] = []
        calls: list[ToolCall] = []
        texts: list[str] = []
        for block in response.content:
            if block.type == "text":
                texts.append(block.text)
                content.append({"type": "text", "text": block.text})
            elif block.type == "tool_use":
                # The arguments stay as the model gave them, NaN included, for the tool loop to refuse
                # that one call; the turn sent back and the text kept must be JSON.
                safe_input = json_safe(block.input)
                if isinstance(block.input, dict):
                    calls.append(ToolCall(block.id, block.name, dict(block.input), canonical_json(safe_input)))
                else:
                    calls.append(
                        ToolCall(
                            block.id, block.name, {}, canonical_json(safe_input), "the arguments are not a JSON object"
                        )
                    )
                    safe_input = {}  # the history must hold an object, or the next request is refused
                content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": safe_input})
        return Reply(
            message={"role": "assistant", "content": content} if content else None,
            calls=calls,
            text="\n".join(texts),
            usage=_usage(response.usage),
            cut=CUT_STOP_REASONS.get(response.stop_reason or ""),
        )

    def user_turn(self, results: list[ToolResult], text: str | None) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": r.call_id, "content": r.content, "is_error": r.is_error}
            for r in results
        ]
        if text:
            content.append({"type": "text", "text": text})
        return [{"role": "user", "content": content}] if content else []
