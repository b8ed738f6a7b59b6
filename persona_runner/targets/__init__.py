"""How a persona reaches what it tests: a persona product, or any MCP server over HTTP or stdio.

`spec` describes a target (light: the catalog reads it); `open` turns a description into the
object ticks visit, which brings in the MCP SDK, so only the commands that tick import it.
"""
