"""Authentication: the credential chain, bearer JWTs, API keys, owners' standing, revocation."""
