"""A target description turned into the object a run's ticks visit, open for the run."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager

from persona_runner.targets.mcp_http import McpHttpTarget
from persona_runner.targets.mcp_stdio import McpStdioTarget
from persona_runner.targets.product import DEFAULT_TIMEOUT, ProductClient
from persona_runner.targets.spec import TargetSpec, bearer_header, child_environment, resolve_headers

OpenTarget = ProductClient | McpHttpTarget | McpStdioTarget


def build_target(
    spec: TargetSpec,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    admin_token: str | None = None,
    modules: Collection[str] | None = None,
) -> OpenTarget:
    """The target `spec` describes; its headers' `${VAR}`s are read now, so a missing one is one line up front.
    `modules` (the catalog's) name the modules of tools that declare none."""
    if spec.kind == "mcp-http":
        assert spec.url is not None, "an mcp-http target has a url (TargetSpec checks it)"
        headers = resolve_headers(spec.headers, "--header") | bearer_header(spec.bearer_env)
        return McpHttpTarget(spec.url, headers, timeout=timeout, modules=modules)
    if spec.kind == "mcp-stdio":
        return McpStdioTarget(spec.command, child_environment(spec.env), modules=modules)
    assert spec.url is not None, "a product target has a url (TargetSpec checks it)"
    return ProductClient(spec.url, timeout=timeout, admin_token=admin_token, modules=modules)


@asynccontextmanager
async def opened_target(
    spec: TargetSpec,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    admin_token: str | None = None,
    modules: Collection[str] | None = None,
) -> AsyncIterator[OpenTarget]:
    """`build_target`, open for the block (its connection pool closed after)."""
    async with build_target(spec, timeout=timeout, admin_token=admin_token, modules=modules) as target:
        yield target
