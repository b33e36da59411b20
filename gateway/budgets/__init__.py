"""Token budgets: configuration, the meter on LLM routes, question and answer reading, stores."""
