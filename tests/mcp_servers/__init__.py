"""MCP servers for the tests, written with the official SDK (run as scripts)."""
