"""The authorisation policy: inheritance, deny by default, strict loading, route matching."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.cli.commands import policy_markdown
from gateway.policy.policy_file import Policy, PolicyError, Upstream

DOC = Path(__file__).resolve().parents[3] / "docs" / "authorization.md"
START, END = "<!-- policy:start -->", "<!-- policy:end -->"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load()


def minimal(**changes: Any) -> dict[str, Any]:
    """A small valid policy document, with top-level keys replaced by changes."""
    data: dict[str, Any] = {
        "version": 1,
        "permissions": {"things:read": "read things", "things:write": "write things"},
        "roles": {
            "reader": {"permissions": ["things:read"]},
            "writer": {"inherits": ["reader"], "permissions": ["things:write"]},
        },
        "routes": [
            {
                "methods": ["GET"],
                "path": "/things/{id}",
                "permission": "things:read",
                "upstream": "orchestrator",
            },
            {"methods": ["GET"], "path": "/healthz", "public": True, "upstream": "gateway"},
        ],
        "rate_limits": {
            "anonymous": "10/minute",
            "invalid_credentials": "5/minute",
            "tiers": {"reader": "100/minute", "writer": "200/minute"},
            "llm": {"reader": "1/minute"},
        },
    }
    data.update(changes)
    return data


def with_route(**route: Any) -> dict[str, Any]:
    data = minimal()
    data["routes"].append(route)
    return data


def test_roles_inherit_permissions(policy: Policy) -> None:
    """engineer has everything technician has, manager everything engineer has, and so on."""
    technician = policy.permissions_for(["technician"])
    engineer = policy.permissions_for(["engineer"])
    manager = policy.permissions_for(["manager"])
    admin = policy.permissions_for(["admin"])
    assert technician < engineer < manager < admin
    assert {"agents:use:planning", "agents:use:compliance"} <= engineer - technician
    assert "api-keys:manage" in manager - engineer
    assert admin - manager == {"users:manage:privileged"}


def test_service_role_is_limited(policy: Policy) -> None:
    """Service callers can converse with two agents but own no profile and administer nothing."""
    service = policy.permissions_for(["service"])
    assert {"messages:create", "agents:use:documentation", "agents:use:planning"} <= service
    assert not {"agents:use:compliance", "profile:read:own", "api-keys:manage"} & service


def test_unknown_roles_grant_nothing(policy: Policy) -> None:
    """Keycloak's own roles (default-roles-mro, offline_access) add no permission."""
    assert policy.permissions_for(["default-roles-mro", "offline_access"]) == frozenset()
    assert policy.permissions_for(["technician", "offline_access"]) == policy.permissions_for(
        ["technician"]
    )


def test_route_match_gives_rule_and_params(policy: Policy) -> None:
    """A templated route matches one segment per placeholder and returns its value."""
    match = policy.match("GET", "/api/conversations/c-123")
    assert match is not None
    assert match.rule.permission == "conversations:read:own"
    assert match.rule.upstream is Upstream.ORCHESTRATOR
    assert match.params == {"id": "c-123"}


def test_llm_routes_are_marked(policy: Policy) -> None:
    """Posting a message calls the model; reading a conversation does not."""
    post = policy.match("POST", "/api/conversations/c1/messages")
    get = policy.match("GET", "/api/conversations/c1")
    assert post is not None
    assert get is not None
    assert (post.rule.llm, get.rule.llm) == (True, False)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/unknown"),
        ("PUT", "/api/conversations/c1"),
        ("GET", "/api/conversations/"),
        ("GET", "/api/conversations//messages"),
        ("GET", "/api/conversations/c1/extra/deep"),
        ("GET", "/api/conversations/.."),
        ("GET", "api/agents"),
        ("GET", "/API/agents"),
        ("GET", "/api/agents/"),
    ],
)
def test_deny_by_default(policy: Policy, method: str, path: str) -> None:
    """Anything without an exact rule matches nothing."""
    assert policy.match(method, path) is None


def test_allowed_methods_for_405(policy: Policy) -> None:
    """A known path lists its methods; an unknown one lists none."""
    assert policy.allowed_methods("/api/conversations/c1") == {"GET", "DELETE"}
    assert policy.allowed_methods("/api/conversations") == {"GET", "POST"}
    assert policy.allowed_methods("/nowhere") == set()


def test_public_routes(policy: Policy) -> None:
    """Health, metrics, keys and the auth endpoints need no identity; the API does."""
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/.well-known/jwks.json"),
        ("POST", "/auth/backchannel-logout"),
        ("GET", "/auth/login"),
    ]:
        match = policy.match(method, path)
        assert match is not None
        assert match.rule.public
        assert match.rule.permission is None
    api = policy.match("GET", "/api/me")
    assert api is not None
    assert not api.rule.public


def test_api_docs_exist_only_in_development() -> None:
    """/docs and /openapi.json are routes in development and unknown elsewhere."""
    development = Policy.load(environment="development")
    production = Policy.load(environment="production")
    for path in ("/docs", "/openapi.json"):
        assert development.match("GET", path) is not None
        assert production.match("GET", path) is None
        assert Policy.load().match("GET", path) is None


def test_literal_segment_wins_over_placeholder() -> None:
    """/things/special is its own route even though /things/{id} would match it."""
    data = with_route(methods=["GET"], path="/things/special", public=True, upstream="gateway")
    policy = Policy.from_dict(data)
    special = policy.match("GET", "/things/special")
    other = policy.match("GET", "/things/other")
    assert special is not None
    assert other is not None
    assert special.rule.public
    assert other.params == {"id": "other"}


def test_placeholder_route_is_found_when_literal_branch_dead_ends() -> None:
    """A literal prefix that leads nowhere falls back to the placeholder branch."""
    data = with_route(methods=["GET"], path="/things/special/x", public=True, upstream="gateway")
    data["routes"].append(
        {"methods": ["GET"], "path": "/things/{id}/y", "public": True, "upstream": "gateway"}
    )
    match = Policy.from_dict(data).match("GET", "/things/special/y")
    assert match is not None
    assert match.params == {"id": "special"}


def test_method_missing_on_literal_falls_back_to_placeholder() -> None:
    """DELETE /things/special reaches DELETE /things/{id} when /things/special has only GET."""
    data = with_route(methods=["GET"], path="/things/special", public=True, upstream="gateway")
    data["routes"].append(
        {
            "methods": ["DELETE"],
            "path": "/things/{id}",
            "permission": "things:write",
            "upstream": "orchestrator",
        }
    )
    policy = Policy.from_dict(data)
    match = policy.match("DELETE", "/things/special")
    assert match is not None
    assert match.rule.permission == "things:write"
    assert policy.allowed_methods("/things/special") == {"GET", "DELETE"}


def test_clashes_are_found_whatever_the_environment() -> None:
    """A route limited to one environment still may not duplicate another route."""
    data = with_route(
        methods=["GET"],
        path="/things/{other}",
        public=True,
        upstream="gateway",
        environments=["development"],
    )
    with pytest.raises(PolicyError, match="clashes"):
        Policy.from_dict(data, environment="production")


def test_tier_is_the_most_generous_of_the_roles(policy: Policy) -> None:
    """The caller's tier is its role with the highest rate; roles without a tier are ignored."""
    assert policy.tier_for(["technician", "engineer", "default-roles-mro"]) == "engineer"
    assert policy.tier_for(["manager", "service"]) == "service"
    assert policy.tier_for(["offline_access"]) is None
    assert policy.rate_limits.tiers["admin"] == "300/minute"
    assert policy.rate_limits.llm["technician"] == "10/minute"


def test_load_from_a_file(tmp_path: Path) -> None:
    """A policy path given explicitly is read instead of the packaged one."""
    path = tmp_path / "policy.toml"
    path.write_text(
        'version = 1\n[permissions]\n"a:b" = "x"\n[roles.r]\npermissions = ["a:b"]\n'
        '[[routes]]\nmethods = ["GET"]\npath = "/a"\npermission = "a:b"\nupstream = "gateway"\n'
        '[rate_limits]\nanonymous = "1/second"\ninvalid_credentials = "1/second"\n'
        "[rate_limits.tiers]\n[rate_limits.llm]\n"
    )
    policy = Policy.load(path)
    assert policy.permissions_for(["r"]) == {"a:b"}
    assert policy.match("GET", "/a") is not None


def test_invalid_toml_is_a_policy_error(tmp_path: Path) -> None:
    """A syntax error in the file is reported as a PolicyError."""
    path = tmp_path / "policy.toml"
    path.write_text("version = \n")
    with pytest.raises(PolicyError, match="TOML"):
        Policy.load(path)


def _broken(mutate: str) -> dict[str, Any]:
    data = copy.deepcopy(minimal())
    roles, routes, limits = data["roles"], data["routes"], data["rate_limits"]
    match mutate:
        case "role-unknown-permission":
            roles["reader"]["permissions"].append("things:delete")
        case "route-unknown-permission":
            routes[0]["permission"] = "things:delete"
        case "cycle":
            roles["reader"]["inherits"] = ["writer"]
        case "self-cycle":
            roles["reader"]["inherits"] = ["reader"]
        case "unknown-parent":
            roles["reader"]["inherits"] = ["ghost"]
        case "public-and-permission":
            routes[1]["permission"] = "things:read"
        case "neither":
            del routes[0]["permission"]
        case "unknown-route-key":
            routes[0]["premission"] = "things:read"
        case "unknown-role-key":
            roles["reader"]["extends"] = []
        case "duplicate":
            routes.append(dict(routes[0]))
        case "clash":
            routes.append(
                {
                    "methods": ["GET"],
                    "path": "/things/{name}",
                    "public": True,
                    "upstream": "gateway",
                }
            )
        case "bad-method":
            routes[0]["methods"] = ["FETCH"]
        case "bad-upstream":
            routes[0]["upstream"] = "elsewhere"
        case "repeated-placeholder":
            routes[0]["path"] = "/things/{id}/{id}"
        case "half-placeholder":
            routes[0]["path"] = "/things/x{id}"
        case "relative-path":
            routes[0]["path"] = "things"
        case "bad-limit":
            limits["anonymous"] = "lots"
        case "tier-unknown-role":
            limits["tiers"]["ghost"] = "1/minute"
        case "bad-permission-name":
            data["permissions"]["Things"] = "x"
        case "version":
            data["version"] = 2
        case "missing-rate-limits":
            del data["rate_limits"]
    return data


@pytest.mark.parametrize(
    "mutate",
    [
        "role-unknown-permission",
        "route-unknown-permission",
        "cycle",
        "self-cycle",
        "unknown-parent",
        "public-and-permission",
        "neither",
        "unknown-route-key",
        "unknown-role-key",
        "duplicate",
        "clash",
        "bad-method",
        "bad-upstream",
        "repeated-placeholder",
        "half-placeholder",
        "relative-path",
        "bad-limit",
        "tier-unknown-role",
        "bad-permission-name",
        "version",
        "missing-rate-limits",
    ],
)
def test_invalid_policies_are_rejected_at_load(mutate: str) -> None:
    """Each kind of mistake in the file stops the load with a PolicyError."""
    Policy.from_dict(minimal())
    with pytest.raises(PolicyError):
        Policy.from_dict(_broken(mutate))


def test_cycle_error_names_the_chain() -> None:
    """An inheritance cycle is reported with the roles that form it."""
    with pytest.raises(PolicyError, match=r"reader -> writer -> reader|writer -> reader -> writer"):
        Policy.from_dict(_broken("cycle"))


def _big_policy(count: int) -> tuple[Policy, list[tuple[str, str, str]]]:
    """A policy with count routes of mixed shapes, and (method, concrete path, template)."""
    data = minimal(routes=[])
    expected = []
    for n in range(count):
        shape = n % 4
        if shape == 0:
            template, concrete = f"/svc{n}/items", f"/svc{n}/items"
        elif shape == 1:
            template, concrete = f"/svc{n}/items/{{id}}", f"/svc{n}/items/i{n}"
        elif shape == 2:
            template, concrete = f"/api/r{n}/{{a}}/sub/{{b}}", f"/api/r{n}/x/sub/y{n}"
        else:
            template, concrete = f"/api/r{n}/{{a}}/leaf", f"/api/r{n}/z{n}/leaf"
        method = ("GET", "POST", "PUT", "DELETE")[n % 4]
        data["routes"].append(
            {
                "methods": [method],
                "path": template,
                "permission": "things:read",
                "upstream": "orchestrator",
            }
        )
        expected.append((method, concrete, template))
    return Policy.from_dict(data), expected


def test_thousand_routes_match_correctly_and_fast() -> None:
    """With 1,000 routes every path finds its own rule, and lookups cost about as with 10."""
    big, expected = _big_policy(1000)
    for method, concrete, template in expected:
        match = big.match(method, concrete)
        assert match is not None
        assert match.rule.path == template
        assert big.match("PATCH", concrete) is None
    small, small_expected = _big_policy(10)

    def cost(policy: Policy, paths: list[tuple[str, str, str]]) -> float:
        probes = [(m, p) for m, p, _ in paths[:10]] * 300
        start = time.perf_counter()
        for method, path in probes:
            policy.match(method, path)
        return time.perf_counter() - start

    small_cost = min(cost(small, small_expected) for _ in range(3))
    big_cost = min(cost(big, expected) for _ in range(3))
    assert big_cost < small_cost * 5


def test_authorization_doc_matches_the_policy(policy: Policy) -> None:
    """docs/authorization.md carries exactly the matrix the packaged policy generates."""
    text = DOC.read_text("utf-8")
    generated = text.split(START, 1)[1].split(END, 1)[0]
    assert generated.strip() == policy_markdown(policy).strip()
