"""Rate limits: the rules, the Redis window limiter and the in-process fallback."""
