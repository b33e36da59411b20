"""MRO orchestrator: conversations, agent routing and Azure OpenAI behind the gateway."""
