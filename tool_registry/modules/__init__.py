"""The product's modules; `build_registry` declares every tool they offer, in menu order."""

from __future__ import annotations

from tool_registry.modules import admin, calendar, contacts, habits, journal, mood, notes, spaces, todo
from tool_registry.spec import Registry

MODULES = (todo, notes, journal, habits, mood, calendar, contacts, spaces, admin)


def build_registry() -> Registry:
    """A fresh registry of every module's tools; registering a name twice raises."""
    registry = Registry()
    for module in MODULES:
        for spec in module.SPECS:
            registry.register(spec)
    return registry
