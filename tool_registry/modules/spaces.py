"""Spaces: which spaces the caller belongs to, and which one this session acts in."""

from __future__ import annotations

from sqlmodel import Session, col, select

from tool_registry.identity import Membership, Space
from tool_registry.modules._fields import Listing, NoInput, ToolOutput
from tool_registry.spec import ToolContext, ToolSpec


class SpaceOut(ToolOutput):
    id: str
    name: str
    type: str
    role: str
    current: bool


async def list_spaces(inp: NoInput, ctx: ToolContext) -> Listing[SpaceOut]:
    """Reads memberships, not module rows: the caller's own spaces are theirs to see from any space."""

    def work(session: Session) -> Listing[SpaceOut]:
        query = (
            select(Space, Membership.role)
            .join(Membership, col(Membership.space_id) == Space.id)
            .where(Membership.user_id == ctx.user_id)
            .order_by(Space.name, Space.id)
        )
        items = [
            SpaceOut(id=space.id, name=space.name, type=space.type, role=role, current=space.id == ctx.space_id)
            for space, role in session.exec(query)
        ]
        return Listing[SpaceOut].of(items)

    return await ctx.backend.run(ctx, work)


SPECS: list[ToolSpec] = [
    ToolSpec(
        name="spaces.list",
        description="List the spaces you belong to (personal, family, team, ...) with your role, "
        "marking the one this session works in.",
        input=NoInput,
        output=Listing[SpaceOut],
        handler=list_spaces,
    ),
]
