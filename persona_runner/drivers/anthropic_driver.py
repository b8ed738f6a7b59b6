"""A persona played by Claude: the Messages API wire format for `LLMDriver`.

Tools go out as `{name, description, input_schema}`; each `tool_use` block of
an answer comes back in the next user turn as a `tool_result` block with the
same `tool_use_id`, `is_error` set on that block alone.
"""

from __future__ import annotations

from typing import Any

import anthropic

from persona_runner.canonical import canonical_json
from persona_runner.drivers.base import Usage
from persona_runner.drivers.llm import MAX_OUTPUT_TOKENS, LLMDriver, Reply, ToolCall, ToolResult, json_safe


class AnthropicDriver(LLMDriver):
    name = "anthropic"
    client_class = anthropic.AsyncAnthropic
    status_error = anthropic.APIStatusError
    connection_error = anthropic.APIConnectionError

    def tool_spec(self, name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "description": description, "input_schema": schema}

    def request(self, system: str, messages: list[dict[str, Any]], tools: list[dict[str, Any]], forced: str | None) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model, "max_tokens": MAX_OUTPUT_TOKENS, "system": system, "messages": messages}
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
                calls.append(ToolCall(block.id, block.name, dict(block.input), canonical_json(safe_input)))
                content.append({"type": "tool_use", "id": block.id, "name": block.name, "input": safe_input})
        usage = response.usage
        tokens_in = usage.input_tokens + (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        return Reply(
            message={"role": "assistant", "content": content} if content else None,
            calls=calls,
            text="\n".join(texts),
            usage=Usage(tokens_in=tokens_in, tokens_out=usage.output_tokens),
            raw=json_safe(response.model_dump(mode="json", exclude_none=True)),
        )

    def user_turn(self, results: list[ToolResult], text: str | None) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [
            {"type": "tool_result", "tool_use_id": r.call_id, "content": r.content, "is_error": r.is_error} for r in results
        ]
        if text:
            content.append({"type": "text", "text": text})
        return [{"role": "user", "content": content}] if content else []
