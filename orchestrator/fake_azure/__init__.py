"""A local server speaking the Azure OpenAI chat completions API, for development and tests.

It answers offline with deterministic, recognisable text, streams like Azure (SSE chunks, a
usage chunk on request, ``[DONE]``), counts tokens by a documented approximation
(``tokens``), and, through ``/_control``, plays scripted answers and faults and records calls.
"""

from orchestrator.fake_azure.app import create_app
from orchestrator.fake_azure.settings import FakeAzureSettings

__all__ = ["FakeAzureSettings", "create_app"]
