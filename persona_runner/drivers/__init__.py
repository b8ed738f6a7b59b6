"""Drivers decide what a persona does next: scripted (offline, seeded) or a language model.

The names are declared here, apart from the drivers, so that a command's help can list them
without importing the model SDKs; `drivers.factory` builds each.
"""

from typing import Literal, get_args

#: Every driver a run can name: the offline one first, then the language models.
DriverName = Literal["scripted", "anthropic", "openai"]
DRIVERS: tuple[DriverName, ...] = get_args(DriverName)
