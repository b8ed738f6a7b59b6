"""Strict JSON bodies for the product's HTTP API.

Every client mistake (oversized body, malformed JSON, wrong shape, unknown or
invalid fields) becomes a 4xx with a JSON `error` that says what is wrong;
nothing a client sends can produce a 500.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse

from tool_registry.field_errors import field_problems

MAX_BODY_BYTES = 64 * 1024
Model = TypeVar("Model", bound=BaseModel)


class ClientError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra

    def response(self) -> JSONResponse:
        return JSONResponse({"error": str(self), **self.extra}, status_code=self.status)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ClientError(413, f"request body too large: at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ClientError(413, f"request body too large: at most {limit} bytes")
    return bytes(body)


async def read_model(request: Request, model: type[Model]) -> Model:
    """Parse the request body as `model`, or raise ClientError naming the problem."""
    body = await read_body(request)
    if not body:
        raise ClientError(400, "request body is empty: send a JSON object")
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise ClientError(400, "request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ClientError(400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ClientError(400, "request body nests arrays or objects too deeply: send a flat JSON object") from None
    except ValueError:
        # The only other refusal of the JSON reader: an integer too long to convert.
        raise ClientError(
            400,
            f"request body holds an integer of more than {sys.get_int_max_str_digits()} digits: send shorter numbers",
        ) from None
    if not isinstance(data, dict):
        raise ClientError(400, f"request body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [{"field": field, "message": message} for field, message in field_problems(exc, whole="(body)")]
        summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
        raise ClientError(422, f"invalid request body: {summary}", fields=fields) from None
