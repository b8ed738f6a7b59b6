"""`persona-runner serve`: run the reference product (identity, admin API, MCP gateway)."""

from __future__ import annotations

import os
import socket
from typing import Annotated

import typer

from persona_runner.commands.options import DelayOption, FaultOption
from persona_runner.util.errors import UserError


def serve(
    host: Annotated[
        str, typer.Option(help="Interface to listen on. Loopback by default; anything else exposes the product.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8765,
    data: Annotated[
        str | None,
        typer.Option(help="Product database: a SQLite path or a postgresql:// URL. Default ./persona-product.db."),
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(
            envvar="PERSONA_ADMIN_TOKEN",
            help="Enables the admin API (persona seeding) for callers sending this X-Admin-Token.",
        ),
    ] = None,
    policy_mode: Annotated[
        str, typer.Option(help="Policy gate: enforce (deny), log-only (record, allow) or off.")
    ] = "enforce",
    fault: FaultOption = None,
    delay: DelayOption = None,
    rate_limit: Annotated[int, typer.Option(min=1, help="Calls allowed per tool per user per 60 s.")] = 30,
    signing_key: Annotated[
        str | None,
        typer.Option(
            help="Ed25519 PEM file for token signing, created if missing; keeps tokens valid across restarts."
        ),
    ] = None,
    id_seed: Annotated[
        int | None, typer.Option(help="Hand out reproducible row ids, so a seeded run can be repeated call for call.")
    ] = None,
) -> None:
    """Serve the reference product: auth API, admin API, MCP gateway at /mcp, /health and /metrics.

    Example: persona-runner serve --admin-token dev-admin --fault todo.complete=0.5
    """
    import uvicorn

    from persona_runner.commands.product import build_product_app
    from tool_registry.server import ServerConfig

    config = ServerConfig(
        host=host,
        port=port,
        data=data,
        admin_token=admin_token,
        policy_mode=policy_mode,  # type: ignore[arg-type]
        faults=fault or [],
        delays=delay or [],
        rate_limit=rate_limit,
        signing_key=signing_key,
        id_seed=id_seed,
    )
    app = build_product_app(config)
    _check_can_listen(host, port)
    typer.echo(
        f"persona product on http://{host}:{port} (MCP at /mcp, admin API {'on' if admin_token else 'off'})", err=True
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def _check_can_listen(host: str, port: int) -> None:
    """A port in use or a host this machine does not have is one line, not the server's own log and exit code."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UserError(
            f"cannot listen on {host}:{port}: {reason}; pick another --port or --host, or stop what uses it",
            exit_code=1,
        ) from None
