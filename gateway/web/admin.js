// Administration for managers and admins: everyone's conversations, the audit log and usage
// (users.js has the users). The gateway checks every permission again; this only hides what a
// role cannot use.

import { button, field, h, pageHeading, replace, routeHref, time } from "./dom.js";
import { ApiError, get } from "./api.js";
import { problemBlock, showProblem } from "./feedback.js";
import { PAGE_SIZE, conversationList, pageOf, pager } from "./conversations.js";
import { personName } from "./users.js";

// --- everyone's conversations ----------------------------------------------------------------

export async function allConversationsView(ctx) {
  pageHeading(ctx, "Everyone's conversations");
  const user = ctx.query.get("user") || "";
  const page = pageOf(ctx.query);
  const select = field("filter-user", "Person", {
    kind: "select",
    options: [{ value: "", label: "Everyone" }],
  });
  const filter = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter conversations" },
    select.field,
    h("div", { class: "actions" }, button("Show", { kind: "primary", type: "submit" })),
  );
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate(routeHref("/admin/conversations", { user: select.input.value }).slice(1));
  });
  const body = h("div", { class: "list-region", "aria-busy": "true" }, h("p", { text: "Loading…" }));
  ctx.main.append(filter, body);

  // The person list is a convenience: without it the current filter still shows by its id.
  get("/api/admin/users", { limit: 100 }, { signal: ctx.signal })
    .then((result) => {
      for (const person of result.items || []) {
        select.input.append(h("option", { value: person.id, text: `${personName(person)} (${person.username})` }));
      }
      select.input.value = user;
    })
    .catch(() => {});
  if (user) select.input.append(h("option", { value: user, text: user }));
  select.input.value = user;

  const result = await get(
    "/api/conversations",
    { scope: "all", user, limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE },
    { signal: ctx.signal },
  );
  body.removeAttribute("aria-busy");
  if (result.total === 0) {
    replace(body, h("p", { class: "empty card", text: "No conversations match." }));
    return;
  }
  replace(
    body,
    conversationList(result.items, {
      showOwner: true,
      onOwner: (conversation) =>
        ctx.navigate(routeHref("/admin/conversations", { user: conversation.owner_sub }).slice(1)),
    }),
    pager(page, result.total, PAGE_SIZE, (n) => routeHref("/admin/conversations", { user, page: n })),
  );
}

// --- audit -----------------------------------------------------------------------------------

function isoFromLocal(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

function localFromIso(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return shifted.toISOString().slice(0, 16);
}

// The audit log stores subjects (Keycloak ids, "apikey:<id>"); names come from the users and
// keys APIs, when the reader may use them, and the id stays on hover.
const MAX_LOOKUPS = 25;

/** id -> "Name (username)" for people and 'API key "name"' for keys, as far as ctx may see. */
async function nameBook(ctx, ids) {
  const names = new Map();
  const wanted = new Set(ids.filter(Boolean));
  const lookups = [];
  if (ctx.can("users:manage")) {
    lookups.push(
      get("/api/admin/users", { limit: 100 }, { signal: ctx.signal }).then((result) => {
        for (const person of result.items || []) names.set(person.id, personLabel(person));
      }),
    );
  }
  if (ctx.can("api-keys:manage") && [...wanted].some((id) => id.startsWith("apikey:"))) {
    lookups.push(
      get("/api/admin/api-keys", undefined, { signal: ctx.signal }).then((result) => {
        for (const key of result.items || []) names.set(`apikey:${key.id}`, `API key “${key.name}”`);
      }),
    );
  }
  await Promise.allSettled(lookups);
  if (ctx.can("users:manage")) {
    const missing = [...wanted].filter((id) => UUID.test(id) && !names.has(id)).slice(0, MAX_LOOKUPS);
    await Promise.allSettled(
      missing.map((id) =>
        get(`/api/admin/users/${encodeURIComponent(id)}`, undefined, { signal: ctx.signal }).then((person) =>
          names.set(id, personLabel(person)),
        ),
      ),
    );
  }
  return names;
}

function personLabel(person) {
  const name = personName(person);
  return name === person.username ? name : `${name} (${person.username})`;
}

/** The actor id for what was typed: an id as it is, else the one person whose name matches. */
async function actorFor(ctx, typed, names) {
  if (!typed || UUID.test(typed) || typed.includes(":")) return typed;
  const lower = typed.toLowerCase();
  for (const [id, label] of names) if (label.toLowerCase() === lower) return id;
  if (!ctx.can("users:manage")) return typed;
  const result = await get("/api/admin/users", { q: typed, limit: 6 }, { signal: ctx.signal });
  const people = result.items || [];
  if (people.length === 1) return people[0].id;
  throw new ApiError({
    status: 400,
    title: people.length ? "More than one person matches" : "Nobody matches",
    detail: people.length
      ? `Be more specific: ${people.slice(0, 5).map(personLabel).join(", ")}${people.length > 5 ? ", …" : ""}.`
      : `No person's name, username or email contains “${typed}”.`,
  });
}

export async function auditView(ctx) {
  pageHeading(ctx, "Audit log");
  const q = Object.fromEntries(["actor", "action", "since", "until", "limit"].map((k) => [k, ctx.query.get(k) || ""]));
  const actor = field("audit-actor", "Person", {
    value: q.actor,
    hint: "Name, username, email or id",
    list: "audit-people",
    autocomplete: "off",
  });
  const people = h("datalist", { id: "audit-people" });
  const action = field("audit-action", "Action", { value: q.action, hint: "For example auth.login or users.*" });
  const since = field("audit-since", "From", { kind: "datetime-local", value: localFromIso(q.since) });
  const until = field("audit-until", "Until", { kind: "datetime-local", value: localFromIso(q.until) });
  const limit = field("audit-limit", "Show", {
    kind: "select",
    value: q.limit || "100",
    options: ["50", "100", "250", "500"].map((value) => ({ value, label: `${value} events` })),
  });
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter the audit log" },
    actor.field,
    people,
    action.field,
    since.field,
    until.field,
    limit.field,
    h("div", { class: "actions" }, button("Filter", { kind: "primary", type: "submit" })),
  );
  let names = new Map();
  filters.addEventListener("submit", async (event) => {
    event.preventDefault();
    let who;
    try {
      who = await actorFor(ctx, actor.input.value.trim(), names);
    } catch (error) {
      showProblem(error);
      actor.input.focus();
      return;
    }
    ctx.navigate(
      routeHref("/admin/audit", {
        actor: who,
        action: action.input.value.trim(),
        since: isoFromLocal(since.input.value),
        until: isoFromLocal(until.input.value),
        limit: limit.input.value === "100" ? "" : limit.input.value,
      }).slice(1),
    );
  });
  const body = h("div", { class: "list-region", "aria-busy": "true" }, h("p", { text: "Loading…" }));
  ctx.main.append(filters, body);

  const result = await get(
    "/api/admin/audit",
    { actor: q.actor, action: q.action, since: q.since, until: q.until, limit: q.limit || 100 },
    { signal: ctx.signal },
  );
  names = await nameBook(ctx, [q.actor, ...result.items.flatMap((event) => [event.actor, event.target])]);
  replace(people, [...names.values()].filter((label) => !label.startsWith("API key")).map((label) => h("option", { value: label })));
  if (q.actor && names.has(q.actor)) actor.input.value = names.get(q.actor);
  const nameOf = (id) => names.get(id) || shortId(id);
  body.removeAttribute("aria-busy");
  if (!result.items.length) {
    replace(body, h("p", { class: "empty card", text: "No events match." }));
    return;
  }
  const rows = result.items.map((event) =>
    h(
      "tr",
      {},
      h("td", { class: "nowrap" }, time(event.at)),
      h("th", { scope: "row", class: "mono", text: event.action }),
      h("td", {}, h("span", { class: `badge badge-${outcomeClass(event.outcome)}`, text: event.outcome })),
      h(
        "td",
        {},
        event.actor
          ? h("a", {
              href: routeHref("/admin/audit", { ...q, actor: event.actor }),
              title: `${event.actor}: only events by ${nameOf(event.actor)}`,
              class: names.has(event.actor) ? "" : "mono",
              text: nameOf(event.actor),
            })
          : "—",
      ),
      h("td", {
        class: names.has(event.target) ? "" : "mono",
        title: event.target || undefined,
        text: event.target ? nameOf(event.target) : "—",
      }),
      h("td", { text: event.reason || "—" }),
      h("td", { class: "mono", text: event.client_ip || "—" }),
      h(
        "td",
        {},
        event.details && Object.keys(event.details).length
          ? h(
              "details",
              {},
              h("summary", { text: "Details" }),
              h("pre", { class: "mono", text: JSON.stringify(event.details, null, 2) }),
              event.request_id ? h("p", { class: "muted small", text: `Request ${event.request_id}` }) : null,
            )
          : h("span", { class: "muted", text: "—" }),
      ),
    ),
  );
  replace(
    body,
    h("p", {
      class: "muted small",
      text: `${result.items.length} ${result.items.length === 1 ? "event" : "events"}, newest first.`,
    }),
    h(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Audit events" },
      h(
        "table",
        { class: "table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Time", "Action", "Outcome", "Actor", "Target", "Reason", "Client", "Details"].map((text) =>
              h("th", { scope: "col", text }),
            ),
          ),
        ),
        h("tbody", {}, rows),
      ),
    ),
  );
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A Keycloak id shortened to its first block (the whole id is in the title and the filter). */
function shortId(value) {
  if (!value) return "—";
  return UUID.test(value) ? `${value.slice(0, 8)}…` : value;
}

function outcomeClass(outcome) {
  if (outcome === "success") return "ok";
  if (outcome === "denied" || outcome === "failure") return "error";
  return "neutral";
}

// --- usage -----------------------------------------------------------------------------------

const GROUPINGS = [
  { value: "subject,agent", label: "Person and agent" },
  { value: "subject", label: "Person" },
  { value: "agent", label: "Agent" },
  { value: "day", label: "Day" },
  { value: "kind", label: "Kind of caller" },
];
const KINDS = { user: "Person", service: "Service client", api_key: "API key" };
const number = new Intl.NumberFormat(undefined);

function cell(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return number.format(value);
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function capitalised(text) {
  return text ? `${text.charAt(0).toUpperCase()}${text.slice(1)}` : "";
}

/** Who a usage row is about, in words: a person's name, a service client, an API key. */
function callerName(item, names) {
  if (!item.subject) return "—";
  if (names.has(item.subject)) return names.get(item.subject);
  if (item.kind === "service") return `Service client ${item.label || item.subject}`;
  if (item.kind === "api_key") return `API key ${item.label || item.subject}`;
  return item.label || shortId(item.subject);
}

/** The columns a report has, with their words; numbers are right-aligned. */
function usageColumns(groups, names) {
  const columns = [];
  if (groups.includes("subject")) {
    columns.push({ label: "Who", value: (item) => callerName(item, names), title: (item) => item.subject });
  }
  if (groups.includes("kind") || groups.includes("subject")) {
    columns.push({ label: "Kind", value: (item) => KINDS[item.kind] || item.kind || "—" });
  }
  if (groups.includes("agent")) {
    columns.push({ label: "Agent", value: (item) => (item.agent ? `${capitalised(item.agent)} agent` : "—") });
  }
  if (groups.includes("day")) columns.push({ label: "Day", value: (item) => item.day || "—" });
  if (groups.includes("tier")) columns.push({ label: "Tier", value: (item) => item.tier || "—" });
  const numeric = [
    ["Answers", "requests"],
    ["Question tokens", "prompt_tokens"],
    ["Answer tokens", "completion_tokens"],
    ["Total tokens", "total_tokens"],
    ["Charged to budgets", "charged_tokens"],
  ];
  for (const [label, key] of numeric) columns.push({ label, value: (item) => cell(item[key]), num: true });
  return columns;
}

/** A table that becomes one card per row on a phone (each cell names its column). */
function usageTable(items, columns) {
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Usage" },
    h(
      "table",
      { class: "table usage-table" },
      h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col", class: column.num ? "num" : "", text: column.label })))),
      h(
        "tbody",
        {},
        items.map((item) =>
          h(
            "tr",
            {},
            columns.map((column, index) =>
              h(index === 0 ? "th" : "td", {
                scope: index === 0 ? "row" : undefined,
                class: column.num ? "num" : "",
                "data-label": column.label,
                title: column.title ? column.title(item) || undefined : undefined,
                text: column.value(item),
              }),
            ),
          ),
        ),
      ),
    ),
  );
}

const dayFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });

function dayText(value) {
  const date = new Date(`${value}T00:00:00Z`);
  return Number.isNaN(date.getTime()) ? value : dayFormat.format(date);
}

export async function usageView(ctx) {
  pageHeading(ctx, "Usage");
  const q = Object.fromEntries(["from", "to", "group_by"].map((k) => [k, ctx.query.get(k) || ""]));
  const groupBy = GROUPINGS.some((g) => g.value === q.group_by) ? q.group_by : "subject,agent";
  const first = field("usage-from", "From", { kind: "date", value: q.from, hint: "Default: the 1st of this month" });
  const last = field("usage-to", "To", { kind: "date", value: q.to, hint: "Default: today (UTC days)" });
  const grouping = field("usage-group", "Totals per", { kind: "select", value: groupBy, options: GROUPINGS });
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Choose the usage report" },
    first.field,
    last.field,
    grouping.field,
    h("div", { class: "actions" }, button("Show", { kind: "primary", type: "submit" })),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = {
      from: first.input.value,
      to: last.input.value,
      group_by: grouping.input.value === "subject,agent" ? "" : grouping.input.value,
    };
    ctx.navigate(routeHref("/admin/usage", params).slice(1));
  });
  const body = h("div", { class: "list-region", "aria-busy": "true" }, h("p", { text: "Loading…" }));
  ctx.main.append(filters, body);
  let result;
  try {
    result = await get("/api/admin/usage", { from: q.from, to: q.to, group_by: groupBy }, { signal: ctx.signal });
  } catch (error) {
    body.removeAttribute("aria-busy");
    if (error instanceof ApiError && (error.status === 404 || error.status === 501)) {
      replace(
        body,
        h(
          "div",
          { class: "card notice" },
          h("p", { text: "Usage reporting is not available on this gateway yet." }),
          h("p", { class: "muted small", text: "Token use per person appears here once the gateway records it." }),
        ),
      );
      return;
    }
    replace(body, problemBlock(error));
    return;
  }
  const items = (result && Array.isArray(result.items) && result.items) || [];
  const groups = (result.group_by || groupBy).split(",");
  const names = groups.includes("subject")
    ? await nameBook(ctx, items.filter((item) => item.kind === "user").map((item) => item.subject))
    : new Map();
  body.removeAttribute("aria-busy");
  const facts = [
    ["Period", result.from && result.to ? `${dayText(result.from)} – ${dayText(result.to)}` : "This month"],
    ["Answers", cell(result.requests)],
    ["Total tokens", cell(result.total_tokens)],
    ["Charged to budgets", cell(result.charged_tokens)],
  ];
  replace(
    body,
    h("dl", { class: "facts" }, facts.map(([term, value]) => [h("dt", { text: term }), h("dd", { text: value })])),
    items.length
      ? usageTable(items, usageColumns(groups, names))
      : h("p", { class: "empty card", text: "No usage recorded in this period." }),
    h(
      "p",
      { class: "muted small" },
      "Charged tokens are what counts against token budgets: each agent's tokens weighted by its cost. " +
        "An answer without reported usage is charged what was reserved for it.",
    ),
  );
}
