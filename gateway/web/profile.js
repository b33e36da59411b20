// The signed-in person's profile: what Keycloak knows, the fields they may change themselves,
// and the way to Keycloak's own page for a new password. The employee id and the licence number
// are shown, not offered: a manager or admin sets them (the gateway refuses them here, 403).

import { button, field, h, replace } from "./dom.js";
import { get, request } from "./api.js";
import { clearBanner, clearInvalid, markInvalid, showNotice, showProblem } from "./feedback.js";

const EDITABLE = [
  { name: "first_name", label: "First name", autocomplete: "given-name", required: true },
  { name: "last_name", label: "Last name", autocomplete: "family-name", required: true },
  {
    name: "base_station",
    label: "Base station",
    hint: "IATA (3 letters) or ICAO (4 letters) code",
    attribute: true,
  },
  { name: "department", label: "Department", attribute: true },
];

function valueOf(profile, spec) {
  const source = spec.attribute ? profile.attributes || {} : profile;
  return source[spec.name] ?? "";
}

function facts(profile) {
  const rows = [
    ["Username", profile.username],
    ["Email", profile.email],
    ["Employee id", (profile.attributes || {}).employee_id],
    ["Licence / certification number", (profile.attributes || {}).licence_number],
    ["Roles", (profile.roles || []).join(", ")],
  ];
  return h(
    "dl",
    { class: "facts" },
    rows.map(([term, value]) => [h("dt", { text: term }), h("dd", { text: value || "—" })]),
  );
}

export async function profileView(ctx) {
  ctx.setTitle("Your profile");
  ctx.main.append(h("h1", { id: "page-title", tabindex: "-1", text: "Your profile" }));
  const region = h("div", { "aria-busy": "true" }, h("p", { text: "Loading…" }));
  ctx.main.append(region);
  const profile = await get("/api/me", undefined, { signal: ctx.signal });
  region.removeAttribute("aria-busy");
  if (profile.service) {
    replace(region, facts(profile), h("p", { text: "Machine accounts have no editable profile." }));
    return;
  }

  const inputs = {};
  const fields = EDITABLE.map((spec) => {
    const { field: wrapper, input } = field(`profile-${spec.name}`, spec.label, {
      value: valueOf(profile, spec),
      hint: spec.hint,
      autocomplete: spec.autocomplete,
      required: spec.required,
    });
    inputs[spec.name] = input;
    return wrapper;
  });
  const save = button("Save changes", { kind: "primary", type: "submit" });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "profile-edit-title", novalidate: true },
    h("h2", { id: "profile-edit-title", text: "Details you can change" }),
    fields,
    h("div", { class: "actions" }, save),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearBanner();
    const changes = {};
    for (const spec of EDITABLE) {
      const value = inputs[spec.name].value.trim();
      if (value === String(valueOf(profile, spec))) continue;
      // An emptied attribute is removed; names cannot be removed (the gateway says so).
      changes[spec.name] = value === "" && spec.attribute ? null : value;
    }
    if (Object.keys(changes).length === 0) {
      showNotice("Nothing to save: no field was changed.");
      return;
    }
    save.disabled = true;
    try {
      const updated = await request("PATCH", "/api/me", { body: changes });
      Object.assign(profile, updated);
      for (const spec of EDITABLE) inputs[spec.name].value = valueOf(profile, spec);
      clearInvalid(inputs);
      showNotice("Your profile was saved.");
    } catch (error) {
      showProblem(error);
      markInvalid(inputs, error);
    } finally {
      save.disabled = false;
    }
  });

  const password = button("Change password", { kind: "secondary" });
  password.addEventListener("click", async () => {
    password.disabled = true;
    try {
      const { url } = await request("POST", "/api/me/password");
      const target = new URL(url, location.href);
      if (target.protocol !== "https:" && target.protocol !== "http:") throw new Error("bad URL");
      location.assign(target.href);
    } catch (error) {
      password.disabled = false;
      showProblem(error);
    }
  });

  region.classList.add("narrow");
  replace(
    region,
    h(
      "section",
      { class: "card", "aria-labelledby": "profile-account-title" },
      h("h2", { id: "profile-account-title", text: "Account" }),
      facts(profile),
      h("p", { class: "muted small", text: "Your administrator changes these details." }),
    ),
    form,
    h(
      "section",
      { class: "card", "aria-labelledby": "profile-password-title" },
      h("h2", { id: "profile-password-title", text: "Password" }),
      h("p", {
        text: "Your password is changed on the sign-in service's own page; you come back here afterwards.",
      }),
      password,
    ),
  );
}
