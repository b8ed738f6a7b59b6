"""Administration: account-level changes that no persona is ever offered."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from sqlmodel import Session

from tool_registry.db import utcnow
from tool_registry.identity import user_by_email
from tool_registry.modules._fields import Email, ToolInput, ToolOutput
from tool_registry.spec import ToolContext, ToolError, ToolSpec

Tier = Literal["free", "pro", "team"]


class SetTier(ToolInput):
    email: Email = Field(description="The account's email address.")
    tier: Tier = Field(description="The plan to put the account on.")


class UserTier(ToolOutput):
    id: str
    email: str
    tier: Tier


async def set_tier(inp: SetTier, ctx: ToolContext) -> UserTier:
    def work(session: Session) -> UserTier:
        user = user_by_email(session, inp.email)
        if user is None:
            raise ToolError(f"no account with email {inp.email!r}")
        user.tier = inp.tier
        user.updated_at = utcnow()
        return UserTier.model_validate(user)

    return await ctx.backend.run(ctx, work)


SPECS: list[ToolSpec] = [
    ToolSpec(
        name="admin.set_tier",
        description="Move an account to the free, pro or team plan. Administrators only.",
        input=SetTier,
        output=UserTier,
        handler=set_tier,
        scope="admin",
        policy_hint="write",
    ),
]
