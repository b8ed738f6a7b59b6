"""The reference product as the CLI starts it: `serve` in the foreground, `run` embedded on a free port.

The one place the harness imports `tool_registry`: everything else reaches a product over
the wire. Command modules import this one inside the command that starts a product, so
the other commands never load it.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette

from persona_runner.util.errors import UserError
from tool_registry.faults import FaultSpecError
from tool_registry.policy import POLICY_MODES
from tool_registry.server import BackgroundServer, Product, ServerConfig


def build_product_app(config: ServerConfig) -> Starlette:
    """The product app for a configuration; every configuration mistake is one UserError line."""
    if config.policy_mode not in POLICY_MODES:
        raise UserError(f"--policy-mode {config.policy_mode!r} is not one of {', '.join(POLICY_MODES)}")
    try:
        return Product(config).app()
    except (FaultSpecError, ValueError) as exc:
        raise UserError(str(exc)) from None
    except SQLAlchemyError as exc:
        raise UserError(
            f"--data {config.data}: cannot open the product database ({getattr(exc, 'orig', exc)})"
        ) from None


#: The embedded product serves only this run: once the run is over, a call still being
#: answered belongs to a tick already recorded as aborted, so it is not waited for long.
EMBEDDED_SHUTDOWN_GRACE = 1.0


@contextmanager
def embedded_product(faults: list[str], delays: list[str], id_seed: int | None) -> Iterator[tuple[str, str]]:
    """A fresh reference product on a free loopback port, with a throwaway database, admin token and
    password hashing (its accounts die with it), handing out ids seeded like the run so the same seed
    repeats the same calls."""
    admin_token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="persona-product-") as tmp:
        config = ServerConfig(
            data=f"{tmp}/product.db",
            admin_token=admin_token,
            faults=faults,
            delays=delays,
            id_seed=id_seed,
            password_hashing="throwaway",
        )
        app = build_product_app(config)
        with BackgroundServer(app, shutdown_grace=EMBEDDED_SHUTDOWN_GRACE) as server:
            yield server.url, admin_token
