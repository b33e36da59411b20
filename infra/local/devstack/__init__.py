"""Local development stack: Keycloak, Redis, PostgreSQL and the project's services without Docker.

Used by ``make dev`` (``python -m devstack up``) and by the test suite's session fixtures.
Services already answering on their port are reused; nothing is downloaded twice.
"""
