"""The reference product as one ASGI app: identity routes, admin routes, the MCP
gateway, health and metrics. `persona-runner serve` runs it with uvicorn;
`BackgroundServer` runs it in a thread for tests and the embedded default run.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import uvicorn
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, BearerAuthBackend
from pydantic import AfterValidator, Field
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tool_registry import ids
from tool_registry.access_tokens import JwksAccessVerifier
from tool_registry.backend import Backend
from tool_registry.client_input import ClientInput
from tool_registry.faults import FaultPlan
from tool_registry.gateway import Gateway
from tool_registry.http_json import ClientError, read_model
from tool_registry.identity import Identity, IdentityError, PasswordHashing, User, normalize_email
from tool_registry.login_guard import FAILURES_PER_ACCOUNT, FAILURES_PER_SOURCE, LoginGuard, LoginLimits, LoginThrottled
from tool_registry.membership import MembershipCache
from tool_registry.metrics import GatewayMetrics
from tool_registry.modules import build_registry
from tool_registry.modules._fields import Email as EmailAddress
from tool_registry.overload import busy_response
from tool_registry.policy import PolicyGate, PolicyMode
from tool_registry.schema import open_product_db
from tool_registry.shutdown import BoundedRequests, ShutdownBound
from tool_registry.spec import Registry
from tool_registry.tokens import TokenIssuer, TokenVerifier, load_or_create_key

# The product's email rule, stored the way identity compares emails.
Email = Annotated[EmailAddress, AfterValidator(normalize_email)]


class RegisterBody(ClientInput):
    email: Email
    password: str = Field(min_length=8, max_length=256)
    name: str = Field(min_length=1, max_length=120)


class LoginBody(ClientInput):
    email: Email
    password: str = Field(min_length=1, max_length=256)


class PersonaBody(RegisterBody):
    pass


class SpaceBody(ClientInput):
    name: str = Field(min_length=1, max_length=120)
    type: str = Field(pattern=r"^(family|team|practice|brand)$")
    members: list[Email] = Field(min_length=1, max_length=100)


class PreferencesBody(ClientInput):
    allow_destructive: bool


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765
    data: str | None = None
    admin_token: str | None = None
    policy_mode: PolicyMode = "enforce"
    faults: list[str] = field(default_factory=list)
    delays: list[str] = field(default_factory=list)
    rate_limit: int = 30
    token_ttl_seconds: int = 3600
    signing_key: str | None = None  # PEM path; a fresh key per process when unset
    id_seed: int | None = None  # reproducible row ids (see tool_registry.ids); random when unset
    login_failures_per_source: int = FAILURES_PER_SOURCE  # failed logins per address per 5 minutes
    login_failures_per_account: int = FAILURES_PER_ACCOUNT  # failed logins per account per 5 minutes
    password_hashing: PasswordHashing = "standard"  # throwaway: a product whose accounts die with it


def user_json(user: User) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "kind": user.kind}


class Product:
    """Wires identity, backend, policy and gateway together from one config."""

    def __init__(self, config: ServerConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry or build_registry()
        self.faults = FaultPlan.parse(config.faults, config.delays)
        unknown = self.faults.unknown_tools({spec.name for spec in self.registry})
        if unknown:
            raise ValueError(f"--fault/--delay name unknown tool(s): {', '.join(unknown)}")
        key = load_or_create_key(config.signing_key) if config.signing_key else None
        self.issuer = TokenIssuer(key, ttl_seconds=config.token_ttl_seconds)
        self.verifier = TokenVerifier(self.issuer.jwks(), issuer=self.issuer.issuer, audience=self.issuer.audience)
        self.engine = open_product_db(config.data)
        memberships = MembershipCache()
        self.identity = Identity(self.engine, self.issuer, memberships, config.password_hashing)
        self.logins = LoginGuard(
            LoginLimits(
                failures_per_source=config.login_failures_per_source,
                failures_per_account=config.login_failures_per_account,
            )
        )
        if config.id_seed is not None and self.identity.has_users():
            self.engine.dispose()
            raise ValueError(
                f"--id-seed {config.id_seed} needs a fresh --data database: this one already has users, "
                "whose ids a seeded id stream would hand out again; "
                "point --data at a new database, or leave out --id-seed"
            )
        ids.use(ids.IdSource(config.id_seed))
        self.metrics = GatewayMetrics()
        self.shutdown = ShutdownBound()
        self.policy = PolicyGate(mode=config.policy_mode, rate_limit=config.rate_limit)
        self.gateway = Gateway(
            self.registry,
            backend=Backend(self.engine, memberships),
            policy=self.policy,
            is_member=self.identity.is_member,
            memberships=memberships,
            allows_destructive=self.identity.allows_destructive,
            faults=self.faults,
            metrics=self.metrics,
            host=config.host,
        )

    # identity --------------------------------------------------------------

    async def register(self, request: Request) -> Response:
        body = await read_model(request, RegisterBody)
        user = await self.logins.hashing(
            lambda: self.identity.register(email=body.email, password=body.password, name=body.name)
        )
        return JSONResponse({"user": user_json(user)}, status_code=201)

    async def login(self, request: Request) -> Response:
        body = await read_model(request, LoginBody)
        source = request.client.host if request.client else "(unknown address)"
        try:
            with self.logins.attempt(source, body.email):
                token, expires_at, user = await self.logins.hashing(
                    lambda: self.identity.login(email=body.email, password=body.password)
                )
        except LoginThrottled as exc:
            return JSONResponse({"error": str(exc)}, status_code=429, headers={"retry-after": str(exc.retry_after)})
        return JSONResponse({"token": token, "expires_at": expires_at, "user": user_json(user)})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self.issuer.jwks(), headers={"cache-control": "public, max-age=300"})

    async def my_spaces(self, request: Request) -> Response:
        user_id = self._bearer_subject(request)
        spaces = await anyio.to_thread.run_sync(self.identity.spaces_of, user_id)
        return JSONResponse({"spaces": [{"id": s.id, "name": s.name, "type": s.type, "role": s.role} for s in spaces]})

    async def my_preferences(self, request: Request) -> Response:
        user_id = self._bearer_subject(request)
        body = await read_model(request, PreferencesBody)
        await anyio.to_thread.run_sync(self.identity.set_allow_destructive, user_id, body.allow_destructive)
        return JSONResponse({"allow_destructive": body.allow_destructive})

    # admin -----------------------------------------------------------------

    async def upsert_persona(self, request: Request) -> Response:
        self._require_admin(request)
        body = await read_model(request, PersonaBody)
        user, change = await self.logins.hashing(
            lambda: self.identity.upsert_persona(email=body.email, name=body.name, password=body.password)
        )
        return JSONResponse(
            {"user": user_json(user), "change": change}, status_code=201 if change == "created" else 200
        )

    async def list_personas(self, request: Request) -> Response:
        self._require_admin(request)
        users = await anyio.to_thread.run_sync(self.identity.personas)
        return JSONResponse({"personas": [{**user_json(u), "name": u.name, "tier": u.tier} for u in users]})

    async def delete_persona(self, request: Request) -> Response:
        self._require_admin(request)
        await anyio.to_thread.run_sync(self.identity.delete_persona, request.path_params["user_id"])
        return Response(status_code=204)

    async def upsert_space(self, request: Request) -> Response:
        self._require_admin(request)
        body = await read_model(request, SpaceBody)
        space, added = await anyio.to_thread.run_sync(
            lambda: self.identity.ensure_shared_space(name=body.name, type=body.type, member_emails=body.members)
        )
        return JSONResponse({"space": {"id": space.id, "name": space.name, "type": space.type}, "added": added})

    # operations ------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "tools": len(self.registry.proposable()), "policy_mode": self.policy.mode})

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=self.metrics.content_type)

    # helpers ---------------------------------------------------------------

    def _bearer_subject(self, request: Request) -> str:
        user = request.scope.get("user")
        if not isinstance(user, AuthenticatedUser) or user.access_token.subject is None:
            raise ClientError(401, "missing or invalid bearer token: log in at POST /api/v1/auth/login")
        return user.access_token.subject

    def _require_admin(self, request: Request) -> None:
        expected = self.config.admin_token
        if not expected:
            raise ClientError(403, "the admin API is disabled: start the server with --admin-token")
        given = request.headers.get("x-admin-token", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ClientError(401, "missing or wrong X-Admin-Token header")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.gateway.check_drift()
        with self.shutdown.on_signals():
            async with self.gateway.session_manager.run():
                yield

    def app(self) -> Starlette:
        routes = [
            Route("/api/v1/auth/register", self.register, methods=["POST"]),
            Route("/api/v1/auth/login", self.login, methods=["POST"]),
            Route("/api/v1/auth/jwks", self.jwks, methods=["GET"]),
            Route("/api/v1/me/spaces", self.my_spaces, methods=["GET"]),
            Route("/api/v1/me/preferences", self.my_preferences, methods=["PUT"]),
            Route("/api/v1/admin/personas", self.upsert_persona, methods=["POST"]),
            Route("/api/v1/admin/personas", self.list_personas, methods=["GET"]),
            Route("/api/v1/admin/personas/{user_id}", self.delete_persona, methods=["DELETE"]),
            Route("/api/v1/admin/spaces", self.upsert_space, methods=["POST"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route("/mcp", self.gateway.asgi_app()),
        ]
        middleware = [
            Middleware(BoundedRequests, bound=self.shutdown),
            Middleware(AuthenticationMiddleware, backend=BearerAuthBackend(JwksAccessVerifier(self.verifier))),
            Middleware(AuthContextMiddleware),
        ]
        # Async handlers: Starlette runs plain functions on the worker threads every request shares.
        handlers = {
            ClientError: _client_error,
            IdentityError: _identity_error,
            HTTPException: _http_exception,
            PoolTimeout: busy_response,
            OperationalError: busy_response,
        }
        return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=self.lifespan)


async def _client_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    return exc.response()


async def _identity_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdentityError)
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _http_exception(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class _FromThread(logging.Filter):
    """Drops the records one server thread logs, leaving every other server's alone."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != self.thread_name


#: How long a forced stop may take: closing sockets and cancelling what was left, no waiting.
FORCED_STOP_SECONDS = 3.0


class BackgroundServer:
    """Runs an ASGI app with uvicorn in a daemon thread; a context manager that
    returns once the socket accepts connections and shuts down cleanly on exit.

    On exit the requests still being answered get `shutdown_grace` seconds to finish;
    after that the server stops without them, so a client that went away mid-call
    (a stopped run) never holds its owner's exit for longer.
    """

    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int | None = None, *, shutdown_grace: float = 15.0
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.shutdown_grace = shutdown_grace
        config = uvicorn.Config(
            app, host=self.host, port=self.port, log_level="warning", lifespan="on", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name=f"product-{self.port}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _serve(self) -> None:
        # uvicorn exits on a failed startup; __enter__ reports it from the dead thread
        with contextlib.suppress(SystemExit):
            self._server.run()

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the product failed to start on {self.url}; see the log above")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the product did not start on {self.url} within 30 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=self.shutdown_grace)
        if self._thread.is_alive():
            # uvicorn then skips waiting for open connections and the lifespan's shutdown. The
            # requests left are cancelled, each with a traceback that would only say so: not logged.
            quiet = _FromThread(self._thread.name)
            uvicorn_log = logging.getLogger("uvicorn.error")
            uvicorn_log.addFilter(quiet)
            try:
                self._server.force_exit = True
                self._thread.join(timeout=FORCED_STOP_SECONDS)
            finally:
                uvicorn_log.removeFilter(quiet)

    def __exit__(self, *exc: object) -> None:
        self.stop()
