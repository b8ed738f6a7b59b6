"""Contacts: people with an email, a phone number and notes, found by name or email."""

from __future__ import annotations

import datetime as dt

from pydantic import Field
from sqlalchemy import or_
from sqlmodel import Session, col

from tool_registry.backend import Contact, in_space
from tool_registry.modules._fields import Email, Limit, Listing, Phone, ToolInput, ToolOutput, create_handler
from tool_registry.spec import ToolContext, ToolSpec


class ContactCreate(ToolInput):
    name: str = Field(min_length=1, max_length=120, description="The person's name.")
    email: Email | None = Field(default=None, description="Optional email address.")
    phone: Phone | None = Field(default=None, description="Optional phone number: digits, spaces and + - ( ).")
    notes: str | None = Field(default=None, max_length=1000, description="Optional notes about the person.")


class ContactSearch(ToolInput):
    query: str = Field(min_length=1, max_length=120, description="Part of a name or email address (case-insensitive).")
    limit: Limit = 50


class ContactOut(ToolOutput):
    id: str
    name: str
    email: str | None
    phone: str | None
    notes: str | None
    created_at: dt.datetime


async def search(inp: ContactSearch, ctx: ToolContext) -> Listing[ContactOut]:
    def work(session: Session) -> Listing[ContactOut]:
        matches = or_(
            col(Contact.name).icontains(inp.query, autoescape=True),
            col(Contact.email).icontains(inp.query, autoescape=True),
        )
        query = in_space(Contact, ctx.space_id).where(matches).order_by(Contact.name).limit(inp.limit)
        return Listing[ContactOut].of(session.exec(query))

    return await ctx.backend.run(ctx, work)


SPECS: list[ToolSpec] = [
    ToolSpec(
        name="contacts.create",
        description="Save a person to the current space's contacts, with optional email, phone and notes.",
        input=ContactCreate,
        output=ContactOut,
        handler=create_handler(Contact, ContactOut),
        policy_hint="write",
    ),
    ToolSpec(
        name="contacts.search",
        description="Find contacts whose name or email contains some text (case-insensitive), sorted by name.",
        input=ContactSearch,
        output=Listing[ContactOut],
        handler=search,
    ),
]
