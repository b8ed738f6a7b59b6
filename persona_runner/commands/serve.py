"""`persona-runner serve`: run the reference product (identity, admin API, MCP gateway)."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Annotated

import typer

from persona_runner.commands.options import DelayOption, FaultOption
from persona_runner.util.errors import UserError
from tool_registry.identity import PasswordHashing
from tool_registry.policy import PolicyMode


def serve(
    host: Annotated[
        str,
        typer.Option(
            metavar="HOST", help="Interface to listen on. Loopback by default; anything else exposes the product."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="TCP port.")] = 8765,
    data: Annotated[
        str | None,
        typer.Option(
            metavar="PATH|URL",
            help="Product database: a SQLite path or a postgresql:// URL. Default ./persona-product.db.",
        ),
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            envvar="PERSONA_ADMIN_TOKEN",
            help="Enables the admin API (persona seeding) for callers sending this X-Admin-Token.",
        ),
    ] = None,
    policy_mode: Annotated[
        PolicyMode, typer.Option(help="Policy gate: enforce (deny), log-only (record, allow) or off.")
    ] = "enforce",
    fault: FaultOption = None,
    delay: DelayOption = None,
    rate_limit: Annotated[int, typer.Option(min=1, metavar="N", help="Calls allowed per tool per user per 60 s.")] = 30,
    signing_key: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="Ed25519 PEM file for token signing, created if missing; keeps tokens valid across restarts.",
        ),
    ] = None,
    id_seed: Annotated[
        int | None,
        typer.Option(metavar="N", help="Hand out reproducible row ids, so a seeded run can be repeated call for call."),
    ] = None,
    password_hashing: Annotated[
        PasswordHashing,
        typer.Option(
            help="standard (argon2id at its recommended cost) or throwaway (cheap: for a product whose accounts "
            "die with it, such as a CI job's; never for one people log in to)."
        ),
    ] = "standard",
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
        policy_mode=policy_mode,
        faults=fault or [],
        delays=delay or [],
        rate_limit=rate_limit,
        signing_key=signing_key,
        id_seed=id_seed,
        password_hashing=password_hashing,
    )
    with _listening(host, port) as listener:  # before the product exists: a busy port leaves no database behind
        app = build_product_app(config)
        typer.echo(
            f"persona product on http://{host}:{port} (MCP at /mcp, admin API {'on' if admin_token else 'off'})",
            err=True,
        )
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the server has shut down in order, as asked
            server.run(sockets=[listener])
    if not server.started:
        raise UserError("the product did not start: see the lines above", exit_code=1)


def _listening(host: str, port: int) -> socket.socket:
    """The product's socket, bound and listening. A port in use or a host this machine does not have is one
    line, not the server's own log and exit code."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise UserError(
            f"cannot listen on {host}:{port}: {reason}; pick another --port or --host, or stop what uses it",
            exit_code=1,
        ) from None
