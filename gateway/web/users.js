// Users and their roles, for holders of users:manage: search, create, grant and remove roles,
// set the licence number, disable and enable, end sessions. Managers cannot act on managers or
// admins; nobody on themselves (the gateway enforces both; the page only leaves the controls out).

import { button, confirmDialog, field, h, pageHeading, replace, routeHref } from "./dom.js";
import { get, request } from "./api.js";
import { clearBanner, clearInvalid, markInvalid, showNotice, showProblem } from "./feedback.js";
import { PAGE_SIZE, pageOf, pager } from "./conversations.js";

const ROLES = ["technician", "engineer", "manager", "admin"];
const PRIVILEGED = new Set(["manager", "admin"]);
const CREATABLE = ["technician", "engineer"];
// Keycloak's composite roles: a role held through another cannot be removed on its own
// (the gateway answers 409 role_inherited), so its chip says where it comes from instead.
const INCLUDED_IN = { technician: ["engineer", "manager"], engineer: ["manager"] };
const PENDING = { VERIFY_EMAIL: "Email not verified", UPDATE_PASSWORD: "No password set yet" };

/** The role of user that brings role with it, or null when role is held on its own. */
export function inheritedFrom(user, role) {
  return (INCLUDED_IN[role] || []).find((holder) => user.roles.includes(holder)) || null;
}

/** What a person still has to do before they can work: unverified email, no password. */
export function pendingSteps(user) {
  const actions = new Set(user.required_actions || []);
  const steps = [];
  if (!user.email_verified || actions.has("VERIFY_EMAIL")) steps.push(PENDING.VERIFY_EMAIL);
  if (actions.has("UPDATE_PASSWORD")) steps.push(PENDING.UPDATE_PASSWORD);
  return steps;
}

/** First and last name, or the username. */
export function personName(user) {
  const name = [user.first_name, user.last_name].filter(Boolean).join(" ");
  return name || user.username;
}

function createUserForm(ctx, onCreated) {
  const specs = [
    ["username", "Username", { required: true, autocomplete: "off" }],
    ["email", "Email", { kind: "email", required: true, autocomplete: "off" }],
    ["first_name", "First name", { required: true }],
    ["last_name", "Last name", { required: true }],
    ["employee_id", "Employee id", {}],
    ["licence_number", "Licence / certification number", {}],
    ["base_station", "Base station", { hint: "IATA or ICAO code" }],
    ["department", "Department", {}],
  ];
  const inputs = {};
  const fields = specs.map(([name, label, options]) => {
    const { field: wrapper, input } = field(`new-${name}`, label, options);
    inputs[name] = input;
    return wrapper;
  });
  const role = field("new-role", "Role", {
    kind: "select",
    options: CREATABLE.map((value) => ({ value, label: value })),
    value: "technician",
  });
  const create = button("Create user", { kind: "primary", type: "submit" });
  const form = h(
    "form",
    { class: "form grid-form", "aria-label": "New user" },
    fields,
    role.field,
    h(
      "p",
      { class: "muted small wide", text: "The new user receives an email to verify the address and set a password." },
    ),
    h("div", { class: "actions wide" }, create),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearBanner();
    const body = { role: role.input.value };
    for (const [name] of specs) {
      const value = inputs[name].value.trim();
      if (value) body[name] = value;
    }
    create.disabled = true;
    try {
      const created = await request("POST", "/api/admin/users", { body });
      form.reset();
      clearInvalid(inputs);
      if (created.invitation_sent === false) {
        showProblem({
          title: `Created ${created.username}, but the invitation email could not be sent`,
          detail:
            `${created.username} cannot sign in until they get it. Ask an administrator to send it ` +
            "again from Keycloak's console (the person's page, Credentials, Credential reset with " +
            "Verify Email and Update Password), or to check Keycloak's mail settings.",
          code: "invitation_not_sent",
        });
      } else {
        showNotice(`Created ${created.username}; an invitation email is on its way.`);
      }
      await onCreated();
    } catch (error) {
      showProblem(error);
      markInvalid({ ...inputs, role: role.input }, error);
    } finally {
      create.disabled = false;
    }
  });
  return h(
    "details",
    { class: "card disclosure" },
    h("summary", { text: "Create a technician or engineer" }),
    form,
  );
}

// The Part-66 licence number: verified and set here, shown read-only on the person's own profile.
function licenceCell(user, name, locked, reload) {
  const current = (user.attributes || {}).licence_number || "";
  if (locked) return h("td", { text: current || "—" });
  const inputId = `licence-${user.id}`;
  const input = h("input", {
    id: inputId,
    name: "licence_number",
    class: "compact",
    size: "16",
    autocomplete: "off",
    props: { value: current },
  });
  const save = button("Save", {
    kind: "secondary",
    type: "submit",
    "aria-label": `Save the licence number of ${name}`,
  });
  const form = h(
    "form",
    { class: "inline-form", novalidate: true },
    h("label", { for: inputId, class: "visually-hidden", text: `Licence number of ${name}` }),
    input,
    save,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearBanner();
    const value = input.value.trim();
    if (value === current) {
      showNotice(`Nothing to save: the licence number of ${name} is unchanged.`);
      return;
    }
    save.disabled = true;
    try {
      await request("PATCH", `/api/admin/users/${encodeURIComponent(user.id)}`, {
        body: { licence_number: value || null },
      });
      clearInvalid({ licence_number: input });
      showNotice(value ? `Saved the licence number of ${name}.` : `Removed the licence number of ${name}.`);
      await reload();
    } catch (error) {
      showProblem(error);
      markInvalid({ licence_number: input }, error);
    } finally {
      save.disabled = false;
    }
  });
  return h("td", {}, form);
}

function statusCell(user) {
  const steps = pendingSteps(user);
  return h(
    "td",
    {},
    h("span", {
      class: user.enabled ? "badge badge-ok" : "badge badge-error",
      text: user.enabled ? "Enabled" : "Disabled",
    }),
    steps.length
      ? h(
          "div",
          { class: "pending" },
          h("span", { class: "badge badge-warn", text: "Invitation pending" }),
          h("ul", { class: "pending-steps" }, steps.map((text) => h("li", { text }))),
        )
      : null,
  );
}

function userRow(ctx, user, reload) {
  const privileged = ctx.can("users:manage:privileged");
  const self = ctx.session.user && ctx.session.user.sub === user.id;
  const locked = self || (!privileged && user.roles.some((role) => PRIVILEGED.has(role)));
  const name = personName(user);

  const act = async (method, path, message, confirm) => {
    if (confirm && !(await confirmDialog(confirm))) return;
    clearBanner();
    try {
      await request(method, `/api/admin/users/${encodeURIComponent(user.id)}${path}`);
      showNotice(message);
      await reload();
    } catch (error) {
      showProblem(error);
    }
  };

  const roleChips = h(
    "ul",
    { class: "chips", "aria-label": `Roles of ${name}` },
    user.roles.map((role) => {
      const holder = inheritedFrom(user, role);
      const removable = !holder && !locked && (privileged || !PRIVILEGED.has(role));
      return h(
        "li",
        { class: "chip" },
        h("span", { text: role }),
        holder ? h("small", { class: "chip-note", text: `with ${holder}` }) : null,
        removable
          ? h("button", {
              type: "button",
              class: "chip-remove",
              "aria-label": `Remove role ${role} from ${name}`,
              title: `Remove ${role}`,
              text: "×",
              on: {
                click: () =>
                  act("DELETE", `/roles/${role}`, `Removed ${role} from ${name}.`, {
                    title: `Remove ${role}?`,
                    message: `${name} loses the ${role} role and is signed out everywhere.`,
                    confirmLabel: "Remove role",
                    danger: true,
                  }),
              },
            })
          : null,
      );
    }),
  );

  const grantable = ROLES.filter(
    (role) => !user.roles.includes(role) && (privileged || !PRIVILEGED.has(role)),
  );
  let grant = null;
  if (!locked && grantable.length) {
    const selectId = `grant-${user.id}`;
    const select = h(
      "select",
      { id: selectId, class: "compact" },
      grantable.map((role) => h("option", { value: role, text: role })),
    );
    grant = h(
      "div",
      { class: "inline-form" },
      h("label", { for: selectId, class: "visually-hidden", text: `Role to grant ${name}` }),
      select,
      button("Grant", {
        kind: "secondary",
        "aria-label": `Grant the selected role to ${name}`,
        on: {
          click: () =>
            act("PUT", `/roles/${select.value}`, `Granted ${select.value} to ${name}.`),
        },
      }),
    );
  }

  const actions = locked
    ? h("span", { class: "muted small", text: self ? "Your own account" : "Needs an admin" })
    : h(
        "div",
        { class: "row-actions" },
        user.enabled
          ? button("Disable", {
              kind: "danger-quiet",
              "aria-label": `Disable ${name}`,
              on: {
                click: () =>
                  act("POST", "/disable", `Disabled ${name}.`, {
                    title: `Disable ${name}?`,
                    message: `${name} can no longer sign in, and their sessions end now.`,
                    confirmLabel: "Disable",
                    danger: true,
                  }),
              },
            })
          : button("Enable", {
              kind: "secondary",
              "aria-label": `Enable ${name}`,
              on: { click: () => act("POST", "/enable", `Enabled ${name}.`) },
            }),
        button("End sessions", {
          kind: "secondary",
          "aria-label": `End sessions of ${name}`,
          on: {
            click: () =>
              act("POST", "/logout", `Ended every session of ${name}.`, {
                title: `Sign ${name} out everywhere?`,
                message: `${name} has to sign in again on every device.`,
                confirmLabel: "End sessions",
              }),
          },
        }),
      );

  return h(
    "tr",
    {},
    h(
      "th",
      { scope: "row" },
      h("span", { class: "cell-main", text: name }),
      h("span", { class: "cell-sub", text: user.username }),
    ),
    h("td", { class: "cell-email", text: user.email || "—" }),
    h("td", {}, roleChips, grant),
    licenceCell(user, name, locked, reload),
    statusCell(user),
    h("td", {}, actions),
  );
}

export async function usersView(ctx) {
  pageHeading(ctx, "Users");
  const q = ctx.query.get("q") || "";
  const role = ctx.query.get("role") || "";
  const enabled = ctx.query.get("enabled") || "";
  const page = pageOf(ctx.query);

  const search = field("users-q", "Search", { kind: "search", value: q, hint: "Name, username or email" });
  const roleFilter = field("users-role", "Role", {
    kind: "select",
    value: role,
    options: [{ value: "", label: "Any role" }, ...ROLES.map((value) => ({ value, label: value }))],
  });
  const state = field("users-enabled", "Status", {
    kind: "select",
    value: enabled,
    options: [
      { value: "", label: "Any status" },
      { value: "true", label: "Enabled" },
      { value: "false", label: "Disabled" },
    ],
  });
  const filters = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter users" },
    search.field,
    roleFilter.field,
    state.field,
    h("div", { class: "actions" }, button("Filter", { kind: "primary", type: "submit" })),
  );
  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = { q: search.input.value.trim(), role: roleFilter.input.value, enabled: state.input.value };
    ctx.navigate(routeHref("/admin/users", params).slice(1));
  });
  const body = h("div", { class: "list-region", "aria-busy": "true" }, h("p", { text: "Loading…" }));

  const load = async () => {
    body.setAttribute("aria-busy", "true");
    const result = await get(
      "/api/admin/users",
      { q, role, enabled, limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE },
      { signal: ctx.signal },
    );
    body.removeAttribute("aria-busy");
    if (!result.items.length) {
      replace(body, h("p", { class: "empty card", text: "No users match." }));
      return;
    }
    const table = h(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": "Users" },
      h(
        "table",
        { class: "table users-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Person", "Email", "Roles", "Licence number", "Status", "Actions"].map((text) =>
              h("th", { scope: "col", text }),
            ),
          ),
        ),
        h("tbody", {}, result.items.map((user) => userRow(ctx, user, load))),
      ),
    );
    const total = result.total ?? (page - 1) * PAGE_SIZE + result.items.length;
    replace(
      body,
      table,
      pager(page, total, PAGE_SIZE, (n) => routeHref("/admin/users", { q, role, enabled, page: n })),
    );
  };
  ctx.main.append(createUserForm(ctx, () => load().catch(showProblem)), filters, body);
  await load();
}
