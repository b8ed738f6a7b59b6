"""persona-runner: simulated users exercise a product through its MCP gateway,
rate every module they touch, and leave a record of everything they did."""

__version__ = "0.1.0"
