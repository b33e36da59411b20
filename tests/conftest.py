"""Session-wide fixtures: the real services the integration tests run against."""

pytest_plugins = [
    "tests.fixtures.stack",
    "tests.fixtures.keycloak",
    "tests.fixtures.live",
]
