"""Authorisation: the policy file (``policy.toml`` beside it), its schema, route trie and check."""
