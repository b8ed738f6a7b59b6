"""What a target offers, held against what the catalog's personas want: before a run, not after it.

A catalog written for one product and pointed at another runs "fine" with no
calls at all, unless someone says, up front, that no offered tool belongs to
any module a persona uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from persona_runner.catalog import Catalog, PersonaSpec
from persona_runner.domain import ToolInfo
from persona_runner.targets.base import Target, Visitor
from persona_runner.targets.product import personal_space


@dataclass(frozen=True)
class Survey:
    tools: list[ToolInfo]
    #: Modules personas of the catalog name that no offered tool belongs to.
    modules_without_tools: list[str]
    #: Offered tools whose module no persona uses: nobody will call them.
    tools_unused: list[ToolInfo]
    #: Personas none of whose modules (with a weight) has a tool: they would make no call at all.
    personas_idle: list[PersonaSpec]


def survey_of(catalog: Catalog, personas: list[PersonaSpec], tools: list[ToolInfo]) -> Survey:
    offered = {tool.module for tool in tools}
    used = {module for persona in personas for module, weight in persona.module_mix.items() if weight > 0}
    return Survey(
        tools=tools,
        modules_without_tools=sorted(catalog.modules - offered),
        tools_unused=[tool for tool in tools if tool.module not in used],
        personas_idle=[
            persona
            for persona in personas
            if not any(weight > 0 and module in offered for module, weight in persona.module_mix.items())
        ],
    )


async def survey(target: Target, catalog: Catalog, personas: list[PersonaSpec], visitor: Visitor) -> Survey:
    """The tools `target` offers `visitor` (a persona of the catalog), held against `personas`."""
    async with target.visit(visitor, personal_space) as visit:
        return survey_of(catalog, personas, visit.tools)


def idle_warning(survey: Survey) -> str | None:
    """One line naming the personas that would make no call, and what the target offers instead."""
    if not survey.personas_idle:
        return None
    names = ", ".join(persona.name for persona in survey.personas_idle)
    offered = sorted({tool.module for tool in survey.tools})
    shown = ", ".join(offered[:12]) + (" ..." if len(offered) > 12 else "")
    return (
        f"warning: no offered tool belongs to a module of {names}; the target's tools fall in modules "
        f"{shown or '(none: it offers no tools)'}; see `persona-runner catalog validate --against`"
    )
