"""The browser login (BFF): OIDC client, ID tokens, sessions, login state, CSRF."""
