"""The orchestrator's HTTP API (behind the gateway): ``create_app`` builds it."""

from orchestrator.api.app import create_app

__all__ = ["create_app"]
