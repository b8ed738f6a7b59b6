"""Embedded identity provider: users, spaces, memberships, password hashing, EdDSA JWTs."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerifyMismatchError
from sqlalchemy import Table, UniqueConstraint, delete, inspect, or_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Relationship, Session, col, select

from tool_registry.db import ProductTable, serialize_writes, utcnow
from tool_registry.ids import new_id
from tool_registry.membership import MembershipCache
from tool_registry.tokens import TokenIssuer

SPACE_TYPES = ("personal", "family", "team", "practice", "brand")


class User(ProductTable, table=True):
    __tablename__ = "users"

    id: str = Field(default_factory=new_id, primary_key=True)
    email: str = Field(unique=True, index=True)
    name: str
    kind: str = "human"  # human | persona | system
    tier: str = "free"
    password_hash: str
    allow_destructive: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Space(ProductTable, table=True):
    __tablename__ = "spaces"

    id: str = Field(default_factory=new_id, primary_key=True)
    name: str = Field(index=True)
    type: str  # personal | family | team | practice | brand
    owner_id: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Membership(ProductTable, table=True):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("space_id", "user_id", name="uq_membership"),)

    id: str = Field(default_factory=new_id, primary_key=True)
    space_id: str = Field(index=True, foreign_key="spaces.id")
    user_id: str = Field(index=True, foreign_key="users.id")
    role: str = "member"  # owner | member
    created_at: datetime = Field(default_factory=utcnow)
    # Declared so that one flush writes users and spaces before the memberships that
    # reference them: SQLAlchemy orders inserts by relationships, not by foreign keys.
    space: Space = Relationship()
    user: User = Relationship()


# The tables behind the two models every other product table refers to.
USERS, SPACES = inspect(User).local_table, inspect(Space).local_table

#: How passwords are hashed: `standard` (argon2id at its library's recommended cost: tens of milliseconds
#: and 64 MiB each) for a product that keeps its accounts; `throwaway` for one whose accounts die with it (the
#: embedded product of a run, a CI job's), where each login would otherwise cost a run more than its calls.
PasswordHashing = Literal["standard", "throwaway"]
HASHERS: dict[str, PasswordHasher] = {
    "standard": PasswordHasher(),
    "throwaway": PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
}


class IdentityError(Exception):
    """A request the identity provider refuses; `status` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class SpaceView:
    id: str
    name: str
    type: str
    role: str


class Identity:
    """Users, spaces and memberships, and the password checks that guard them.

    Methods are synchronous (short transactions); the HTTP layer runs them in a
    worker thread because the password hash is deliberately slow. A password is
    never hashed or verified while a database connection is held: the pool is
    shared with every other request, and Argon2 takes tens of milliseconds.
    """

    def __init__(
        self,
        engine: Engine,
        issuer: TokenIssuer,
        memberships: MembershipCache | None = None,
        hashing: PasswordHashing = "standard",
    ) -> None:
        self.engine = engine
        self.issuer = issuer
        self.memberships = memberships or MembershipCache()
        self._hasher = HASHERS[hashing]
        # What a login for an unknown email is checked against: the same slow verification as a wrong password,
        # so the time a login takes does not tell which emails have accounts. Made here, so no login pays for it.
        self._decoy_hash = self._hasher.hash(secrets.token_urlsafe(32))

    # users -----------------------------------------------------------------

    def register(self, *, email: str, password: str, name: str, kind: str = "human") -> User:
        """Create a user and their personal space; IdentityError(409) if the email is taken."""
        email = normalize_email(email)
        password_hash = self._hasher.hash(password)
        with Session(self.engine) as session:
            if user_by_email(session, email):
                raise IdentityError(f"a user with email {email} already exists", 409)
            user = User(email=email, name=name, kind=kind, password_hash=password_hash)
            self._create(session, user)
            return user

    def login(self, *, email: str, password: str) -> tuple[str, int, User]:
        """Return (token, expires_at, user); IdentityError(401) with one message for every failure,
        so a caller cannot tell a wrong password from an unknown email."""
        user = self._find(email)
        matches = self._password_matches(user.password_hash if user else self._decoy_hash, password)
        if user is None or not matches:
            raise IdentityError("invalid email or password", 401)
        if self._hasher.check_needs_rehash(user.password_hash):
            self._set_password_hash(user, self._hasher.hash(password))
        token, expires_at = self.issuer.issue(sub=user.id, email=user.email, kind=user.kind)
        return token, expires_at, user

    def upsert_persona(self, *, email: str, name: str, password: str) -> tuple[User, str]:
        """Create or update a persona user by email; returns (user, "created" | "updated" | "unchanged").

        Idempotent: the same request twice changes nothing the second time,
        which is what lets seeding run on every deploy.
        """
        email = normalize_email(email)
        user = self._find(email)
        if user is not None and user.kind != "persona":
            raise IdentityError(f"user {email} is a {user.kind} account, not a persona; choose another email", 409)
        if user is None:
            user = User(email=email, name=name, kind="persona", password_hash=self._hasher.hash(password))
            with Session(self.engine) as session:
                self._create(session, user)
            return user, "created"
        new_hash = None if self._password_matches(user.password_hash, password) else self._hasher.hash(password)
        if user.name == name and new_hash is None:
            return user, "unchanged"
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(user)
            user.name = name
            user.password_hash = new_hash or user.password_hash
            user.updated_at = utcnow()
            session.commit()
        return user, "updated"

    def has_users(self) -> bool:
        """Whether any account exists: a seeded id stream may only start on a database without any."""
        with Session(self.engine) as session:
            return session.exec(select(User.id).limit(1)).first() is not None

    def personas(self) -> list[User]:
        with Session(self.engine) as session:
            return list(session.exec(select(User).where(User.kind == "persona").order_by(User.email)))

    def delete_persona(self, user_id: str) -> None:
        """Delete a persona and everything of theirs, in one transaction; refuses (409) anyone who is not a persona.

        "Everything" is found from the schema, not from a list of modules: in
        every product table, rows that reference the persona or one of their
        personal spaces, children before parents. Shared spaces and what other
        members wrote there stay. A row of someone else that still depends on
        the persona's rows (a member's log of the persona's shared habit) makes
        the delete a 409 and nothing is removed.
        """
        with Session(self.engine) as session:
            user = session.get(User, user_id)
            if user is None:
                raise IdentityError(f"no user with id {user_id}", 404)
            if user.kind != "persona":
                raise IdentityError(
                    f"user {user_id} is a {user.kind}, not a persona; only personas can be deleted here", 409
                )
            personal = list(session.exec(select(Space.id).where(Space.type == "personal", Space.owner_id == user_id)))
            try:
                for table in reversed(ProductTable.metadata.sorted_tables):
                    if table is not USERS and table is not SPACES:
                        _delete_rows_of(session, table, user_id, personal)
                session.execute(delete(Space).where(col(Space.id).in_(personal)))
                session.execute(delete(User).where(col(User.id) == user_id))
                session.commit()
                self.memberships.forget()
            except IntegrityError:
                raise IdentityError(
                    f"persona {user_id} cannot be deleted: other users' rows still depend on theirs "
                    "(e.g. logs of a habit they shared); remove those first",
                    409,
                ) from None

    def set_allow_destructive(self, user_id: str, allow: bool) -> None:
        """The user's own opt-in to destructive tools (off by default)."""
        with Session(self.engine) as session:
            user = session.get(User, user_id)
            if user is None:
                raise IdentityError(f"no user with id {user_id}", 404)
            user.allow_destructive, user.updated_at = allow, utcnow()
            session.add(user)
            session.commit()

    def allows_destructive(self, user_id: str) -> bool:
        with Session(self.engine) as session:
            user = session.get(User, user_id)
            return bool(user and user.allow_destructive)

    # spaces ----------------------------------------------------------------

    def spaces_of(self, user_id: str) -> list[SpaceView]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(Space, Membership.role)
                .join(Membership, col(Membership.space_id) == Space.id)
                .where(Membership.user_id == user_id)
                .order_by(col(Space.type) != "personal", Space.name)
            )
            return [SpaceView(id=space.id, name=space.name, type=space.type, role=role) for space, role in rows]

    def is_member(self, user_id: str, space_id: str) -> bool:
        """Asks the database unless the answer was "yes" a moment ago (see `MembershipCache`)."""
        if self.memberships.known(user_id, space_id):
            return True
        with Session(self.engine) as session:
            member = is_member(session, user_id, space_id)
        if member:
            self.memberships.remember(user_id, space_id)
        return member

    def ensure_shared_space(self, *, name: str, type: str, member_emails: list[str]) -> tuple[Space, list[str]]:
        """Create the shared space `name` if missing and add every listed member; idempotent by name.

        Returns the space and the emails that were newly added. Unknown emails
        are refused (404) before anything is written.
        """
        if type not in SPACE_TYPES or type == "personal":
            raise IdentityError(f"space type {type!r} is not one of family, team, practice, brand", 422)
        emails = [normalize_email(e) for e in member_emails]
        with Session(self.engine) as session:
            serialize_writes(session, key=f"shared space {name}")  # two requests creating one name make one space
            users = {u.email: u for u in session.exec(select(User).where(col(User.email).in_(emails)))}
            missing = [e for e in emails if e not in users]
            if missing:
                raise IdentityError(f"unknown member email(s): {', '.join(missing)}; register them first", 404)
            space = session.exec(select(Space).where(Space.name == name, Space.type != "personal")).first()
            if space is None:
                space = Space(name=name, type=type)
                session.add(space)
                session.flush()
            elif space.type != type:
                raise IdentityError(f"space {name!r} already exists with type {space.type}, not {type}", 409)
            present = set(session.exec(select(Membership.user_id).where(Membership.space_id == space.id)))
            added = []
            for email in emails:
                if users[email].id not in present:
                    session.add(Membership(space_id=space.id, user_id=users[email].id, role="member"))
                    present.add(users[email].id)
                    added.append(email)
            session.commit()
            session.refresh(space)
        self.memberships.forget()
        return space, added

    # helpers ---------------------------------------------------------------

    def _find(self, email: str) -> User | None:
        """The user with this email, read in a transaction of its own that has ended when this returns."""
        with Session(self.engine, expire_on_commit=False) as session:
            user = user_by_email(session, email)
            if user is not None:
                session.expunge(user)
            return user

    def _set_password_hash(self, user: User, password_hash: str) -> None:
        with Session(self.engine, expire_on_commit=False) as session:
            session.add(user)
            user.password_hash, user.updated_at = password_hash, utcnow()
            session.commit()

    def _password_matches(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, InvalidHashError):
            return False

    @classmethod
    def _create(cls, session: Session, user: User) -> None:
        """Write a new user with their personal space; IdentityError(409) when a row written at the
        same moment conflicts: the same email from a parallel request, or the same id from two
        products seeded alike on one database. Sent again, the request finds the other account
        by its email, or draws a fresh id."""
        try:
            cls._add_personal_space(session, user)
            session.commit()
        except IntegrityError:
            session.rollback()
            raise IdentityError(
                f"could not create {user.email}: a conflicting account was written at the same moment; "
                "send the request again",
                409,
            ) from None
        session.refresh(user)

    @staticmethod
    def _add_personal_space(session: Session, user: User) -> None:
        """The user's own space; flushed in order because memberships reference both rows."""
        space = Space(name=f"{user.name} (personal)", type="personal", owner_id=user.id)
        session.add(user)
        session.add(space)
        session.flush()
        session.add(Membership(space_id=space.id, user_id=user.id, role="owner"))


def _delete_rows_of(session: Session, table: Table, user_id: str, personal_spaces: list[str]) -> None:
    """Delete the rows of `table` that point at the user, or at one of their personal spaces."""
    conditions = []
    for column in table.columns:
        for key in column.foreign_keys:
            if key.column.table is USERS:
                conditions.append(column == user_id)
            elif key.column.table is SPACES and personal_spaces:
                conditions.append(column.in_(personal_spaces))
    if conditions:
        session.execute(table.delete().where(or_(*conditions)))


def is_member(session: Session, user_id: str, space_id: str) -> bool:
    """The membership query itself, in the caller's transaction."""
    query = select(Membership.id).where(Membership.user_id == user_id, Membership.space_id == space_id)
    return session.exec(query).first() is not None


def normalize_email(email: str) -> str:
    return email.strip().lower()


def user_by_email(session: Session, email: str) -> User | None:
    """The user with this email, however it is cased or padded (emails are stored normalized)."""
    return session.exec(select(User).where(User.email == normalize_email(email))).first()
