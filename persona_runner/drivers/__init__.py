"""Drivers decide what a persona does next: scripted (offline, seeded) or a language model.

The names are declared here, apart from the drivers, so that a command's help can list them
without importing the model SDKs; `drivers.factory` builds each.
"""

#: Every driver a run can name: the offline one first, then the language models.
DRIVERS = ("scripted", "anthropic", "openai")
