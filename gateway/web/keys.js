// API keys for services (an ERP, a documentation robot), for holders of api-keys:manage: create,
// list, rotate, revoke. A key's secret is in the answer that creates it and never again, so the
// page shows it once, with a copy button, until it is dismissed.

import { button, confirmDialog, field, h, pageHeading, replace, time } from "./dom.js";
import { get, request } from "./api.js";
import { announce, clearBanner, clearInvalid, markInvalid, showNotice, showProblem } from "./feedback.js";

// What a key may be given: the service role's permissions (policy.toml), in words.
export const SCOPES = [
  { value: "agents:read", label: "List the agents" },
  { value: "agents:use:documentation", label: "Documentation agent" },
  { value: "agents:use:planning", label: "Planning agent" },
  { value: "conversations:create", label: "Start conversations" },
  { value: "messages:create", label: "Ask questions" },
  { value: "conversations:read:own", label: "Read its conversations" },
  { value: "conversations:delete:own", label: "Delete its conversations" },
];
const DEFAULT_SCOPES = new Set([
  "agents:read",
  "agents:use:documentation",
  "conversations:create",
  "messages:create",
  "conversations:read:own",
]);
const LIFETIMES = ["30", "90", "180", "365"];

/** The words for a permission (the permission itself when it has none). */
export function scopeLabel(permission) {
  const scope = SCOPES.find((candidate) => candidate.value === permission);
  return scope ? scope.label : permission;
}

const STATUS = {
  active: ["Active", "ok"],
  expired: ["Expired", "neutral"],
  revoked: ["Revoked", "error"],
  rotated: ["Replaced", "neutral"],
};

/** Copy text to the clipboard; falls back to selecting the field for Ctrl+C. */
async function copy(text, input) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    input.focus();
    input.select();
    return false;
  }
}

/** The panel that shows a new secret once; dismissing it removes the secret from the page. */
function secretPanel(region, created, heading) {
  const inputId = "new-key-secret";
  const input = h("input", {
    id: inputId,
    class: "mono secret",
    readonly: true,
    autocomplete: "off",
    spellcheck: "false",
    props: { value: created.key },
  });
  const copied = h("p", { class: "muted small", id: "new-key-copied", "aria-live": "polite" });
  const copyButton = button("Copy key", {
    kind: "primary",
    "aria-describedby": "new-key-copied",
    on: {
      click: async () => {
        const done = await copy(created.key, input);
        copied.textContent = done ? "Copied to the clipboard." : "Selected: press Ctrl+C to copy.";
      },
    },
  });
  const dismiss = button("I have stored the key", {
    kind: "secondary",
    on: {
      click: () => {
        replace(region);
        region.hidden = true;
        document.getElementById("keys-title")?.focus();
      },
    },
  });
  region.hidden = false;
  replace(
    region,
    h("h2", { id: "new-key-title", tabindex: "-1", text: heading }),
    h(
      "p",
      {},
      "This is the only time the key is shown: store it in the service's secret store now. ",
      "The service sends it as ",
      h("code", { text: "X-API-Key: <key>" }),
      ".",
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: inputId, text: `Key for ${created.name}` }),
      h("div", { class: "inline-form secret-row" }, input, copyButton),
      copied,
    ),
    h("div", { class: "actions" }, dismiss),
  );
  region.querySelector("h2").focus();
}

function createKeyForm(ctx, onCreated) {
  const name = field("key-name", "Name", {
    required: true,
    maxlength: "200",
    autocomplete: "off",
    hint: "What uses the key, for example ERP sync",
  });
  const lifetime = field("key-expires", "Expires after", {
    kind: "select",
    value: "90",
    options: LIFETIMES.map((value) => ({ value, label: `${value} days` })),
  });
  const offered = SCOPES.filter((scope) => ctx.can(scope.value));
  const boxes = offered.map((scope) => {
    const id = `key-scope-${scope.value.replaceAll(":", "-")}`;
    const box = h("input", { type: "checkbox", id, name: "permissions", value: scope.value });
    box.checked = DEFAULT_SCOPES.has(scope.value);
    return { scope, box, row: h("div", { class: "check" }, box, h("label", { for: id, text: scope.label })) };
  });
  const scopes = h(
    "fieldset",
    { class: "checks wide", id: "key-scopes" },
    h("legend", { text: "What the key may do" }),
    boxes.map((item) => item.row),
  );
  const create = button("Create key", { kind: "primary", type: "submit" });
  const form = h(
    "form",
    { class: "form grid-form", "aria-label": "New API key" },
    name.field,
    lifetime.field,
    scopes,
    h("div", { class: "actions wide" }, create),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearBanner();
    const permissions = boxes.filter((item) => item.box.checked).map((item) => item.scope.value);
    if (!permissions.length) {
      showProblem({ title: "Choose what the key may do", detail: "Tick at least one permission." });
      boxes[0]?.box.focus();
      return;
    }
    create.disabled = true;
    try {
      const created = await request("POST", "/api/admin/api-keys", {
        body: {
          name: name.input.value.trim(),
          permissions,
          expires_in_days: Number(lifetime.input.value),
        },
      });
      clearInvalid({ name: name.input });
      form.reset();
      boxes.forEach((item) => (item.box.checked = DEFAULT_SCOPES.has(item.scope.value)));
      lifetime.input.value = "90";
      await onCreated(created, `New key “${created.name}”`);
    } catch (error) {
      showProblem(error);
      markInvalid({ name: name.input, expires_in_days: lifetime.input }, error);
    } finally {
      create.disabled = false;
    }
  });
  return h(
    "details",
    { class: "card disclosure" },
    h("summary", { text: "Create an API key" }),
    form,
  );
}

function statusCell(key) {
  const [label, kind] = STATUS[key.status] || [key.status, "neutral"];
  return h(
    "td",
    {},
    h("span", { class: `badge badge-${kind}`, text: label }),
    key.status === "active" && key.replaced_by && key.grace_until
      ? h("span", { class: "cell-sub" }, "Replaced; works until ", time(key.grace_until))
      : null,
  );
}

function keyRow(key, act) {
  const actions = [];
  if (key.status === "active" && !key.replaced_by) {
    actions.push(
      button("Rotate", {
        kind: "secondary",
        "aria-label": `Rotate the key ${key.name}`,
        on: { click: () => act.rotate(key) },
      }),
    );
  }
  if (key.status === "active") {
    actions.push(
      button("Revoke", {
        kind: "danger-quiet",
        "aria-label": `Revoke the key ${key.name}`,
        on: { click: () => act.revoke(key) },
      }),
    );
  }
  return h(
    "tr",
    {},
    h(
      "th",
      { scope: "row" },
      h("span", { class: "cell-main", text: key.name }),
      h("span", { class: "cell-sub mono", text: key.id }),
    ),
    h("td", { title: key.owner_sub, text: key.owner_name || key.owner_sub }),
    h(
      "td",
      {},
      h(
        "ul",
        { class: "scope-list", "aria-label": `What ${key.name} may do` },
        key.permissions.map((permission) => h("li", { title: permission, text: scopeLabel(permission) })),
      ),
    ),
    statusCell(key),
    h("td", { class: "nowrap" }, key.expires_at ? time(key.expires_at) : "Never"),
    h("td", { class: "nowrap" }, key.last_used_at ? time(key.last_used_at) : h("span", { class: "muted", text: "Never used" })),
    h("td", {}, actions.length ? h("div", { class: "row-actions" }, actions) : h("span", { class: "muted", text: "—" })),
  );
}

export async function apiKeysView(ctx) {
  const heading = pageHeading(ctx, "API keys");
  heading.id = "keys-title";
  const secret = h("section", { class: "card secret-panel", "aria-labelledby": "new-key-title", hidden: true });
  const showAll = h("input", { type: "checkbox", id: "keys-all" });
  showAll.checked = ctx.query.get("all") === "1";
  const toggle = h(
    "div",
    { class: "check" },
    showAll,
    h("label", { for: "keys-all", text: "Show revoked, expired and replaced keys" }),
  );
  const body = h("div", { class: "list-region", "aria-busy": "true" }, h("p", { text: "Loading…" }));

  const reveal = async (created, title) => {
    secretPanel(secret, created, title);
    await load();
  };

  const act = {
    rotate: async (key) => {
      const ok = await confirmDialog({
        title: `Rotate ${key.name}?`,
        message:
          "A new key with the same name and rights is made and shown once. The current key keeps " +
          "working for 24 hours, so the service can switch over.",
        confirmLabel: "Rotate",
      });
      if (!ok) return;
      clearBanner();
      try {
        const created = await request("POST", `/api/admin/api-keys/${encodeURIComponent(key.id)}/rotate`, {
          body: { grace_hours: 24 },
        });
        await reveal(created, `New key for “${created.name}”`);
      } catch (error) {
        showProblem(error);
      }
    },
    revoke: async (key) => {
      const ok = await confirmDialog({
        title: `Revoke ${key.name}?`,
        message: "The key stops working now; a service that still sends it is refused.",
        confirmLabel: "Revoke",
        danger: true,
      });
      if (!ok) return;
      clearBanner();
      try {
        await request("POST", `/api/admin/api-keys/${encodeURIComponent(key.id)}/revoke`);
        showNotice(`Revoked the key ${key.name}.`);
        await load();
      } catch (error) {
        showProblem(error);
      }
    },
  };

  const load = async () => {
    body.setAttribute("aria-busy", "true");
    const result = await get("/api/admin/api-keys", undefined, { signal: ctx.signal });
    body.removeAttribute("aria-busy");
    const items = showAll.checked ? result.items : result.items.filter((key) => key.status === "active");
    if (!items.length) {
      replace(body, h("p", { class: "empty card", text: showAll.checked ? "No API keys yet." : "No active API keys." }));
      return;
    }
    replace(
      body,
      h(
        "div",
        { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "API keys" },
        h(
          "table",
          { class: "table keys-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Name", "Owner", "May", "Status", "Expires", "Last used", "Actions"].map((text) =>
                h("th", { scope: "col", text }),
              ),
            ),
          ),
          h("tbody", {}, items.map((key) => keyRow(key, act))),
        ),
      ),
    );
    announce(`${items.length} API keys listed.`);
  };

  showAll.addEventListener("change", () => {
    ctx.replaceRoute(showAll.checked ? "/admin/api-keys?all=1" : "/admin/api-keys");
    load().catch(showProblem);
  });
  ctx.main.append(
    h(
      "p",
      { class: "muted" },
      "Services such as an ERP integration sign in with an API key. A key may do at most what you may do, " +
        "and it stops working when it expires, is revoked, or its owner loses the rights.",
    ),
    secret,
    createKeyForm(ctx, reveal),
    toggle,
    body,
  );
  await load();
}
