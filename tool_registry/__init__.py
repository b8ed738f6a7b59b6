"""The product side: a registry of tools, a reference product behind them, an
identity provider, and the MCP gateway that exposes the registry to agents."""
