// Talking to the gateway: JSON requests with the session's CSRF token, RFC 9457 problems as
// ApiError, and answers streamed as server-sent events.

import { readEventStream } from "./sse.js";

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = null;

/** The token the gateway wants in X-CSRF-Token on unsafe requests (from /auth/session). */
export function setCsrfToken(token) {
  csrfToken = token || null;
}

/** An error answer of the gateway, read from its problem+json body when there is one. */
export class ApiError extends Error {
  constructor({ status, title, detail, code, requestId, retryAfter, errors }) {
    super(detail || title || `Request failed (${status})`);
    this.name = "ApiError";
    this.status = status;
    this.title = title || defaultTitle(status);
    this.detail = detail || "";
    this.code = code || "";
    this.requestId = requestId || "";
    this.retryAfter = retryAfter;
    this.errors = errors || [];
  }
}

function defaultTitle(status) {
  if (status === 0) return "No connection";
  if (status === 401) return "Signed out";
  if (status === 403) return "Not allowed";
  if (status === 404) return "Not found";
  if (status === 429) return "Too many requests";
  if (status >= 500) return "Service unavailable";
  return "Request failed";
}

/** Seconds from a Retry-After field (delta-seconds or an HTTP date), or undefined. */
export function retryAfterSeconds(value, now = Date.now()) {
  if (!value) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now) / 1000));
}

async function toError(response) {
  let body = {};
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      body = await response.json();
    } catch {
      body = {};
    }
  }
  const error = new ApiError({
    status: response.status,
    title: typeof body.title === "string" ? body.title : undefined,
    detail: typeof body.detail === "string" ? body.detail : undefined,
    code: typeof body.code === "string" ? body.code : undefined,
    requestId: body.request_id || response.headers.get("x-request-id") || undefined,
    retryAfter: retryAfterSeconds(response.headers.get("retry-after")),
    errors: Array.isArray(body.errors) ? body.errors : undefined,
  });
  if (response.status === 401) {
    window.dispatchEvent(new CustomEvent("mro:unauthenticated", { detail: error }));
  }
  return error;
}

function networkError(cause) {
  if (cause && cause.name === "AbortError") throw cause;
  return new ApiError({
    status: 0,
    detail: "The gateway could not be reached. Check the network connection and try again.",
    code: "network_error",
  });
}

function url(path, query) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

function headersFor(method, accept, hasBody) {
  const headers = { Accept: accept };
  if (hasBody) headers["Content-Type"] = "application/json";
  if (UNSAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  return headers;
}

/** A JSON request; resolves to the parsed body (null for 204), rejects with ApiError. */
export async function request(method, path, { query, body, signal } = {}) {
  let response;
  try {
    response = await fetch(url(path, query), {
      method,
      headers: headersFor(method, "application/json", body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
      signal,
    });
  } catch (cause) {
    throw networkError(cause);
  }
  if (!response.ok) throw await toError(response);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : null;
}

export const get = (path, query, options) => request("GET", path, { ...options, query });

const WINDOWS = { minute: "per-minute", hour: "hourly", day: "daily", week: "weekly", month: "monthly" };

/** Sentences for an MRO-Budget-Warning field such as "user:day 82%". */
export function budgetWarning(field) {
  const sentences = [];
  for (const [, scope, window, used] of field.matchAll(/([a-z_-]+):([a-z_-]+)\s+(\d{1,3})\s*%/gi)) {
    const owner = scope.toLowerCase() === "user" ? "your" : `the ${scope}`;
    sentences.push(`${used} % of ${owner} ${WINDOWS[window.toLowerCase()] || window} token budget is used.`);
  }
  return sentences.join(" ");
}

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Ask a question and stream the answer. handlers: meta({agent, confidence, ...}),
 * delta(text), done({usage, partial}), error({status, detail, partial}), and budget(field)
 * when the gateway warns that a token budget is nearly used (MRO-Budget-Warning).
 * Rejects with ApiError when the request itself is refused (before any event).
 */
export async function streamAnswer(conversationId, payload, handlers, signal) {
  const method = "POST";
  const headers = headersFor(method, "text/event-stream", true);
  headers["Idempotency-Key"] = randomKey();
  let response;
  try {
    response = await fetch(`/api/conversations/${encodeURIComponent(conversationId)}/messages`, {
      method,
      headers,
      body: JSON.stringify(payload),
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
      signal,
    });
  } catch (cause) {
    throw networkError(cause);
  }
  if (!response.ok) throw await toError(response);
  const warning = response.headers.get("mro-budget-warning");
  if (warning) handlers.budget?.(warning);
  const type = response.headers.get("content-type") || "";
  if (!type.startsWith("text/event-stream")) {
    // A server that answers whole (201 JSON) gets the same treatment as one event each.
    const exchange = await response.json();
    const answer = exchange.assistant_message || {};
    handlers.meta?.({ agent: answer.agent, confidence: answer.confidence });
    if (answer.content) handlers.delta?.(answer.content);
    handlers.done?.({ usage: answer.usage, partial: answer.status === "partial" });
    return;
  }
  let finished = false;
  await readEventStream(response, ({ event, data }) => {
    let body;
    try {
      body = JSON.parse(data);
    } catch {
      return;
    }
    if (event === "meta") handlers.meta?.(body);
    else if (event === "delta" && typeof body.content === "string") handlers.delta?.(body.content);
    else if (event === "done") {
      finished = true;
      handlers.done?.(body);
    } else if (event === "error") {
      finished = true;
      handlers.error?.(body);
    }
  });
  if (!finished) {
    handlers.error?.({
      status: 502,
      detail: "The answer stopped before it was complete.",
      code: "stream_interrupted",
      partial: true,
    });
  }
}
