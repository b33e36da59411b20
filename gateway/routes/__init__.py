"""The gateway's own routes, one module per route family."""
