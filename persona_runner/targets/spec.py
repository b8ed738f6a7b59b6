"""A target described once: what `run`, `soak`, `worker`, `replay` and `seed` point the personas at.

- `product`: a persona product (derived login, spaces, `X-Space`) at a base URL.
- `mcp-http`: any MCP server over Streamable HTTP at an endpoint URL, with headers.
- `mcp-stdio`: any MCP server started as a child process, one per persona's day.

Header values may name environment variables (`Bearer ${STAGING_TOKEN}`), so a
secret stays out of shell history, out of the catalog and out of the results
store: a run records the headers' names, never their values.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from persona_runner.util.errors import UserError
from persona_runner.util.urls import require_http_url

TargetKind = Literal["product", "mcp-http", "mcp-stdio"]
#: `${NAME}` in a header value: the value of the environment variable NAME.
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: A header name as HTTP allows it (a token).
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TargetSpec(BaseModel):
    """Where the personas go and how they get in. In a catalog's `targets` section it is written in camelCase."""

    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_alias=True, validate_by_name=True, extra="forbid", frozen=True
    )

    kind: TargetKind = "product"
    #: The product's base URL (`product`), or the MCP endpoint (`mcp-http`, e.g. http://127.0.0.1:3001/mcp).
    url: str | None = None
    #: Sent with every MCP request (`mcp-http`); values may hold `${VAR}`.
    headers: dict[str, str] = Field(default_factory=dict)
    #: An environment variable whose value is sent as `Authorization: Bearer <value>` (`mcp-http`).
    bearer_env: str | None = None
    #: The server's command line (`mcp-stdio`), as a list of arguments.
    command: list[str] = Field(default_factory=list)
    #: For the child (`mcp-stdio`): `NAME` passes the variable through, `NAME=value` sets it.
    env: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> TargetSpec:
        needs_url = self.kind in ("product", "mcp-http")
        if needs_url and not self.url:
            raise ValueError(f"a {self.kind} target needs a url")
        if self.url:
            try:
                require_http_url(self.url, "url", "http://127.0.0.1:3001/mcp")
            except UserError as exc:
                raise ValueError(str(exc)) from None
        if self.kind == "mcp-stdio" and not self.command:
            raise ValueError('an mcp-stdio target needs a command, e.g. ["uvx", "mcp-server-time"]')
        if self.kind != "mcp-stdio" and (self.command or self.env):
            raise ValueError("command and env belong to an mcp-stdio target")
        if self.kind != "mcp-http" and (self.headers or self.bearer_env):
            raise ValueError("headers and bearerEnv belong to an mcp-http target (a product logs its personas in)")
        bad = [name for name in self.headers if not _HEADER_NAME.match(name)]
        if bad:
            raise ValueError(f"header name {bad[0]!r} is not a valid HTTP header name")
        bad = [item for item in self.env if not _ENV_NAME.match(item.partition("=")[0])]
        if bad:
            raise ValueError(f"env entry {bad[0]!r}: write NAME to pass a variable through, or NAME=value")
        return self

    @classmethod
    def product(cls, url: str) -> TargetSpec:
        return cls(kind="product", url=url)

    @property
    def address(self) -> str:
        """What a run records as its target: the URL, or the child's command line."""
        return self.url if self.url else stdio_address(self.command)

    def on_record(self) -> dict[str, Any]:
        """The target as a run's config keeps it: header names, never their values."""
        kept: dict[str, Any] = {"kind": self.kind, "address": self.address}
        if self.headers:
            kept["headers"] = sorted(self.headers)
        if self.bearer_env:
            kept["bearer_env"] = self.bearer_env
        if self.env:
            kept["env"] = [item.partition("=")[0] for item in self.env]
        return kept


def stdio_address(command: list[str]) -> str:
    """How a child server is named where a URL would be: in the run's record, in messages."""
    return f"stdio: {shlex.join(command)}"


def resolve_headers(headers: Mapping[str, str], where: str, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`headers` with every `${VAR}` replaced by its value; a variable that is not set is one line naming it."""

    def value(name: str, text: str) -> str:
        def substitute(match: re.Match[str]) -> str:
            variable = match[1]
            if variable not in env:
                raise UserError(f"{where}: header {name} needs ${{{variable}}}, which is not set: export {variable}")
            return env[variable]

        return _REFERENCE.sub(substitute, text)

    return {name: value(name, text) for name, text in headers.items()}


def bearer_header(variable: str | None, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`Authorization: Bearer <$variable>`, or nothing when no variable is named."""
    if variable is None:
        return {}
    token = env.get(variable, "").strip()
    if not token:
        raise UserError(f"--bearer-env {variable}: the variable is not set or empty; export the token in it")
    return {"Authorization": f"Bearer {token}"}


def child_environment(entries: list[str], env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables an mcp-stdio child gets beyond the SDK's safe defaults (PATH, HOME...)."""
    chosen: dict[str, str] = {}
    for entry in entries:
        name, equals, text = entry.partition("=")
        if equals:
            chosen[name] = text
        elif name in env:
            chosen[name] = env[name]
    return chosen
