"""cedargate: an MCP server that governs what coding agents may do in the cloud and in repositories."""

__version__ = "0.1.0"
