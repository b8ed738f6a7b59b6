"""Commands listed by name and one line of help, their modules imported only when they run.

Importing a command's module can import the product, the LLM SDKs, the MCP stack or the
results store: seconds of CPU that `--help` or `catalog validate` would pay for nothing.
The group below lists stand-ins, and swaps in the real command once the command line
names it (which includes `COMMAND --help`). This is click's "lazy group" pattern, on the
click that typer 0.29 vendors as `typer._click`.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, ClassVar

import typer
from typer._click import Command, Context
from typer.core import TyperCommand, TyperGroup


class LazyCommand(TyperCommand):
    """Stands in for a command in listings; `load` imports its module and builds the real one.

    `target` is `"package.module:attribute"`, the attribute a command function or a
    `typer.Typer` of subcommands; `short_help` is what the group's help shows for it.
    """

    def __init__(self, name: str, target: str, short_help: str) -> None:
        super().__init__(name, short_help=short_help)
        self.target = target

    def load(self) -> Command:
        module, attribute = self.target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        if isinstance(command, typer.Typer):
            return typer.main.get_group(command)
        single = typer.Typer(add_completion=False)
        single.command(self.name)(command)
        return typer.main.get_command(single)


class LazyGroup(TyperGroup):
    """A group whose commands are `LazyCommand`s, loaded when resolved; subclasses set `lazy_commands`.

    typer builds the group itself (`typer.Typer(cls=...)`), so the commands come as a class
    attribute rather than a constructor argument.
    """

    lazy_commands: ClassVar[Sequence[LazyCommand]] = ()

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        for command in self.lazy_commands:
            self.add_command(command)

    def resolve_command(self, ctx: Context, args: list[str]) -> tuple[str | None, Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if isinstance(command, LazyCommand):
            command = command.load()
        return name, command, rest
