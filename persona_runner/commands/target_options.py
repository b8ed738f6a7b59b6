"""The flags that say where the personas go, shared by `run`, `soak`, `worker`, `replay` and `catalog validate`.

One of: `--target URL` (a persona product), `--mcp-url URL` (any MCP server over
Streamable HTTP, with `--header`/`--bearer-env`), `--mcp-stdio 'COMMAND ARGS'`
(any MCP server as a child process, with `--env`), or `--target-name NAME` (a
target the catalog describes). None of them: the embedded reference product.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Annotated

import typer
from pydantic import ValidationError

from persona_runner.catalog import Catalog
from persona_runner.targets.spec import TargetSpec
from persona_runner.util.errors import UserError

McpUrlOption = Annotated[
    str | None,
    typer.Option(
        "--mcp-url",
        metavar="URL",
        help="An MCP server's Streamable HTTP endpoint, e.g. http://127.0.0.1:3001/mcp: no login, no spaces.",
        show_default=False,
    ),
]
HeaderOption = Annotated[
    list[str] | None,
    typer.Option(
        "--header",
        metavar="'NAME: VALUE'",
        help="Sent with every request to --mcp-url (repeatable); ${VAR} in the value is read from the environment.",
        show_default=False,
    ),
]
BearerEnvOption = Annotated[
    str | None,
    typer.Option(
        "--bearer-env",
        metavar="VAR",
        help="Send 'Authorization: Bearer' with the token in this environment variable to --mcp-url.",
        show_default=False,
    ),
]
McpStdioOption = Annotated[
    str | None,
    typer.Option(
        "--mcp-stdio",
        metavar="'COMMAND ARGS'",
        help="Start this MCP server as a child process for each persona's day, over stdin/stdout.",
        show_default=False,
    ),
]
EnvOption = Annotated[
    list[str] | None,
    typer.Option(
        "--env",
        metavar="NAME[=VALUE]",
        help="For --mcp-stdio: pass NAME through to the child, or set it (repeatable).",
        show_default=False,
    ),
]
TargetNameOption = Annotated[
    str | None,
    typer.Option(
        "--target-name",
        metavar="NAME",
        help="A target described in the catalog's `targets` section.",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class TargetChoice:
    """The target flags as given; `spec` makes one target of them."""

    target: str | None = None
    mcp_url: str | None = None
    header: list[str] | None = None
    bearer_env: str | None = None
    mcp_stdio: str | None = None
    env: list[str] | None = None
    target_name: str | None = None

    def spec(self, catalog: Catalog) -> TargetSpec | None:
        """The target the flags name, None for the embedded product; a contradiction or a bad value is one line."""
        named = {
            "--target": self.target,
            "--mcp-url": self.mcp_url,
            "--mcp-stdio": self.mcp_stdio,
            "--target-name": self.target_name,
        }
        given = [flag for flag, value in named.items() if value]
        if len(given) > 1:
            raise UserError(f"{' and '.join(given)} each name a target: give one")
        if (self.header or self.bearer_env) and not (self.mcp_url or self.target_name):
            raise UserError("--header and --bearer-env go with --mcp-url (a product logs its personas in)")
        if self.env and not (self.mcp_stdio or self.target_name):
            raise UserError("--env goes with --mcp-stdio: it sets the child server's environment")
        if self.target_name:
            return self._named(catalog, self.target_name)
        try:
            if self.mcp_url:
                return TargetSpec(
                    kind="mcp-http", url=self.mcp_url, headers=_headers(self.header or []), bearer_env=self.bearer_env
                )
            if self.mcp_stdio:
                return TargetSpec(kind="mcp-stdio", command=_command(self.mcp_stdio), env=list(self.env or []))
        except ValidationError as exc:
            raise UserError(f"{given[0]}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
        return TargetSpec.product(self.target) if self.target else None

    def _named(self, catalog: Catalog, name: str) -> TargetSpec:
        spec = catalog.targets.get(name)
        if spec is None:
            known = ", ".join(catalog.targets) or "none: add a `targets` section"
            raise UserError(f"--target-name {name!r}: the catalog names no such target (it names: {known})")
        extra_headers = _headers(self.header or [])
        return spec.model_copy(
            update={
                "headers": {**spec.headers, **extra_headers},
                "bearer_env": self.bearer_env or spec.bearer_env,
                "env": [*spec.env, *(self.env or [])],
            }
        )


def _headers(given: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for header in given:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            raise UserError(f"--header {header!r}: write it as 'Name: value', e.g. --header 'X-Team: ${{TEAM_ID}}'")
        headers[name.strip()] = value.strip()
    return headers


def _command(text: str) -> list[str]:
    try:
        command = shlex.split(text)
    except ValueError as exc:
        raise UserError(f"--mcp-stdio {text!r}: {exc}; quote it like a shell command line") from None
    if not command:
        raise UserError("--mcp-stdio is empty: give the server's command line, e.g. --mcp-stdio 'mcp-server-time'")
    return command


def chosen_target(
    choice: TargetChoice, catalog: Catalog, *, admin_token: str | None = None, product_flags: bool = False
) -> TargetSpec | None:
    """The target of a command that may also start the embedded product (None), checked against the flags that
    only make sense for some targets: `--admin-token` seeds a product, `--fault`/`--delay` (`product_flags`) shape
    the embedded one."""
    spec = choice.spec(catalog)
    if spec is not None and product_flags:
        raise UserError(
            "--fault/--delay configure the embedded product; for another target pass them to its own server"
        )
    if spec is not None and spec.kind != "product" and admin_token:
        raise UserError(f"--admin-token seeds a persona product; an {spec.kind} target has no accounts to seed")
    return spec
