"""Command groups of the `persona-runner` CLI, one module each, registered in `persona_runner.cli`."""
