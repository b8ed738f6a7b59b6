"""Commands of the `persona-runner` CLI, one module each, registered lazily in `persona_runner.cli`.

A command module imports at its top what its options and help need. The heavy parts a
command needs only to run (the product, the LLM SDKs, the MCP client) are imported inside
the command function, or by a helper module imported there, so asking for help never pays
for them.
"""
