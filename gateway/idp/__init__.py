"""Keycloak as identity provider: admin client, users, admin events, the credential revoker."""
