"""Notes: titled free text with tags; list, search, append, tag, delete."""

from __future__ import annotations

import datetime as dt

from pydantic import Field
from sqlalchemy import or_
from sqlmodel import Session, col

from tool_registry.backend import Note, get_in_space, in_space
from tool_registry.db import utcnow
from tool_registry.modules._fields import (
    Limit,
    Listing,
    RowId,
    Tag,
    Tags,
    ToolInput,
    ToolOutput,
    create_handler,
)
from tool_registry.spec import ToolContext, ToolError, ToolSpec

EXCERPT_CHARS = 200
MAX_BODY_CHARS = 20_000
MAX_TAGS = 10


class NoteCreate(ToolInput):
    title: str = Field(min_length=1, max_length=200, description="The note's title.")
    body: str = Field(default="", max_length=MAX_BODY_CHARS, description="The note's text.")
    tags: Tags = Field(default=[])


class NoteList(ToolInput):
    tag: Tag | None = Field(default=None, description="Only notes carrying this tag.")
    limit: Limit = 50


class NoteSearch(ToolInput):
    query: str = Field(
        min_length=1, max_length=200, description="Text to look for in titles and bodies (case-insensitive)."
    )
    limit: Limit = 50


class NoteId(ToolInput):
    id: RowId = Field(description="The note's id, as returned by notes.create, notes.list or notes.search.")


class NoteAppend(NoteId):
    text: str = Field(min_length=1, max_length=5000, description="Text to add, on a new line, at the end of the body.")


class NoteTag(NoteId):
    tags: Tags = Field(min_length=1)


class NoteOut(ToolOutput):
    id: str
    title: str
    body: str
    tags: list[str]
    created_at: dt.datetime
    updated_at: dt.datetime


class NoteSummary(ToolOutput):
    id: str
    title: str
    excerpt: str = Field(description=f"The start of the body, at most {EXCERPT_CHARS} characters.")
    tags: list[str]


class NoteDeleted(ToolOutput):
    id: str
    deleted: bool = True


def _summary(note: Note) -> NoteSummary:
    body = " ".join(note.body.split())
    excerpt = body if len(body) <= EXCERPT_CHARS else body[: EXCERPT_CHARS - 1] + "…"
    return NoteSummary(id=note.id, title=note.title, excerpt=excerpt, tags=note.tags)


async def list_notes(inp: NoteList, ctx: ToolContext) -> Listing[NoteSummary]:
    """Tags live in a JSON column, which SQLite and PostgreSQL query differently,
    so the tag filter runs here over the space's notes, newest first."""

    def work(session: Session) -> Listing[NoteSummary]:
        notes = session.exec(in_space(Note, ctx.space_id).order_by(col(Note.updated_at).desc()))
        tagged = [note for note in notes if inp.tag is None or inp.tag in note.tags]
        return Listing[NoteSummary].of([_summary(note) for note in tagged[: inp.limit]])

    return await ctx.backend.run(ctx, work)


async def search(inp: NoteSearch, ctx: ToolContext) -> Listing[NoteSummary]:
    def work(session: Session) -> Listing[NoteSummary]:
        matches = or_(
            col(Note.title).icontains(inp.query, autoescape=True), col(Note.body).icontains(inp.query, autoescape=True)
        )
        query = in_space(Note, ctx.space_id).where(matches).order_by(col(Note.updated_at).desc()).limit(inp.limit)
        return Listing[NoteSummary].of([_summary(note) for note in session.exec(query)])

    return await ctx.backend.run(ctx, work)


async def append(inp: NoteAppend, ctx: ToolContext) -> NoteOut:
    def work(session: Session) -> NoteOut:
        note = get_in_space(session, Note, inp.id, ctx.space_id)
        body = f"{note.body}\n{inp.text}" if note.body else inp.text
        if len(body) > MAX_BODY_CHARS:
            raise ToolError(
                f"a note's body holds at most {MAX_BODY_CHARS:,} characters; "
                f"appending {len(inp.text):,} to {note.title!r} would make it {len(body):,}: start a new note instead"
            )
        note.body = body
        note.updated_at = utcnow()
        return NoteOut.model_validate(note)

    return await ctx.backend.run(ctx, work)


async def tag(inp: NoteTag, ctx: ToolContext) -> NoteOut:
    def work(session: Session) -> NoteOut:
        note = get_in_space(session, Note, inp.id, ctx.space_id)
        tags = note.tags + [name for name in inp.tags if name not in note.tags]
        if len(tags) > MAX_TAGS:
            raise ToolError(f"a note can carry at most {MAX_TAGS} tags; {note.title!r} would have {len(tags)}")
        note.tags = tags  # a new list, so the JSON column is seen as changed
        note.updated_at = utcnow()
        return NoteOut.model_validate(note)

    return await ctx.backend.run(ctx, work)


async def delete(inp: NoteId, ctx: ToolContext) -> NoteDeleted:
    def work(session: Session) -> NoteDeleted:
        session.delete(get_in_space(session, Note, inp.id, ctx.space_id))
        return NoteDeleted(id=inp.id)

    return await ctx.backend.run(ctx, work)


SPECS: list[ToolSpec] = [
    ToolSpec(
        name="notes.create",
        description="Write a new note in the current space, with a title, an optional body and optional tags.",
        input=NoteCreate,
        output=NoteOut,
        handler=create_handler(Note, NoteOut),
        policy_hint="write",
    ),
    ToolSpec(
        name="notes.list",
        description="List the notes of the current space, most recently changed first, "
        "optionally only those with a tag. Shows an excerpt; use notes.search to find text.",
        input=NoteList,
        output=Listing[NoteSummary],
        handler=list_notes,
    ),
    ToolSpec(
        name="notes.search",
        description="Find notes whose title or body contains some text (case-insensitive).",
        input=NoteSearch,
        output=Listing[NoteSummary],
        handler=search,
    ),
    ToolSpec(
        name="notes.append",
        description="Add text at the end of an existing note's body, on a new line "
        f"(a body holds at most {MAX_BODY_CHARS:,} characters).",
        input=NoteAppend,
        output=NoteOut,
        handler=append,
        policy_hint="write",
    ),
    ToolSpec(
        name="notes.tag",
        description="Add tags to an existing note; tags it already has are kept once.",
        input=NoteTag,
        output=NoteOut,
        handler=tag,
        policy_hint="write",
    ),
    ToolSpec(
        name="notes.delete",
        description="Delete a note for good. This cannot be undone.",
        input=NoteId,
        output=NoteDeleted,
        handler=delete,
        policy_hint="destructive",
        default_policy="propose",
    ),
]
