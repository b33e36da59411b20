"""Prometheus metrics of one gateway app (its own registry, so several apps can share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120)


class Metrics:
    """The gateway's counters, gauges and histograms."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "mro_gateway_requests",
            "Requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self._latency = Histogram(
            "mro_gateway_request_duration_seconds",
            "Time from the request's arrival to the end of its response, by route template.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._auth_failures = Counter(
            "mro_gateway_auth_failures", "Rejected credentials, by reason.", ["reason"], registry=r
        )
        self._rate_limited = Counter(
            "mro_gateway_rate_limited",
            "Requests refused with 429, by policy.",
            ["policy"],
            registry=r,
        )
        self.ratelimit_fallback = Counter(
            "mro_gateway_ratelimit_fallback",
            "Rate-limit checks served by the in-process fallback while Redis was unreachable.",
            registry=r,
        )
        self.ratelimit_degraded = Gauge(
            "mro_gateway_ratelimit_degraded",
            "1 while the rate limiter runs on its in-process fallback.",
            registry=r,
        )
        self._upstream_errors = Counter(
            "mro_gateway_upstream_errors",
            "Failed upstream exchanges, by kind.",
            ["kind"],
            registry=r,
        )
        self.audit_queue_depth = Gauge(
            "mro_gateway_audit_queue_depth", "Audit events waiting to be written.", registry=r
        )
        self.audit_written = Counter(
            "mro_gateway_audit_written", "Audit events stored in the database.", registry=r
        )
        self.audit_spooled = Counter(
            "mro_gateway_audit_spooled",
            "Audit events written to the local spool file while the database was unreachable.",
            registry=r,
        )
        self._llm_tokens = Counter(
            "mro_gateway_llm_tokens",
            "Model tokens the orchestrator reported, by agent and caller tier.",
            ["agent", "tier"],
            registry=r,
        )
        self._llm_charged = Counter(
            "mro_gateway_llm_tokens_charged",
            "Tokens counted against budgets (weighted by agent; unmetered answers at their "
            "reservation), by agent and caller tier.",
            ["agent", "tier"],
            registry=r,
        )
        self._budget_exceeded = Counter(
            "mro_gateway_token_budget_exceeded",
            "LLM requests refused with 429 for want of tokens, by budget.",
            ["budget"],
            registry=r,
        )
        self.token_reservations_expired = Counter(
            "mro_gateway_token_reservations_expired",
            "Token reservations released because they were never settled.",
            registry=r,
        )
        self.token_budget_unavailable = Counter(
            "mro_gateway_token_budget_unavailable",
            "LLM requests whose budgets could not be checked (Redis unreachable).",
            registry=r,
        )
        # Label lookups take a lock; the hot path reuses the children it already made.
        self._request_counters: dict[tuple[str, str, str], Counter] = {}
        self._latencies: dict[str, Histogram] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request and its duration."""
        method = method if method in _METHODS else "OTHER"
        key = (route, method, str(status))
        counter = self._request_counters.get(key)
        if counter is None:
            counter = self._request_counters[key] = self._requests.labels(*key)
        counter.inc()
        histogram = self._latencies.get(route)
        if histogram is None:
            histogram = self._latencies[route] = self._latency.labels(route)
        histogram.observe(seconds)

    def auth_failure(self, reason: str) -> None:
        self._auth_failures.labels(reason).inc()

    def rate_limited(self, policy: str) -> None:
        self._rate_limited.labels(policy).inc()

    def upstream_error(self, kind: str) -> None:
        self._upstream_errors.labels(kind).inc()

    def llm_tokens(self, agent: str, tier: str, tokens: int, charged: int) -> None:
        """Count one settled LLM answer: reported tokens and tokens charged to budgets."""
        self._llm_tokens.labels(agent, tier).inc(tokens)
        self._llm_charged.labels(agent, tier).inc(charged)

    def token_budget_exceeded(self, budget: str) -> None:
        self._budget_exceeded.labels(budget).inc()

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
