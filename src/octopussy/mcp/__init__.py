"""The MCP layer: our servers (built-in tools), the sandbox, and the client registry."""
