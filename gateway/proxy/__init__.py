"""Forwarding to the orchestrator: the upstream client, the headers that cross, the assertion."""
