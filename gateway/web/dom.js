// Building the page from data without ever parsing data as markup: every text goes through
// textContent or createTextNode, attributes through setAttribute.

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * Create an element. attrs: plain attributes, plus
 *   class (string), text (textContent), on (event name -> handler), props (assigned as properties).
 * children: nodes, strings (as text), arrays, or null/undefined/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else if (key === "class") el.className = value;
    else if (key === "on") {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key === "props") Object.assign(el, value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
}

export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace every child of parent. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

// Icons: fixed path data only (never data from the server), drawn with stroke = currentColor.
const ICONS = {
  plus: "M12 5v14M5 12h14",
  trash: "M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13",
  send: "M4 12l16-8-6 16-2-7z",
  stop: "M7 7h10v10H7z",
  back: "M15 5l-7 7 7 7",
  user: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21a8 8 0 0 1 16 0",
  plane: "M2 13l8-2 4-8h2l-2 8 6 1 2-2h2l-1 4 1 4h-2l-2-2-6 1 2 8h-2l-4-8-8-2z",
  alert: "M12 3l10 18H2zM12 10v5M12 18v.5",
  menu: "M4 7h16M4 12h16M4 17h16",
};

export function icon(name) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG_NS, "path");
  path.setAttribute("d", ICONS[name] || "");
  svg.append(path);
  return svg;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A <time> element for an ISO date string (shown in the browser's locale). */
export function time(iso) {
  if (!iso) return h("span", { text: "—" });
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", { text: String(iso) });
  return h("time", { datetime: date.toISOString(), text: dateFormat.format(date) });
}

/** A labelled form field; returns { field, input }. kind: input type, "select" or "textarea". */
export function field(id, label, { kind = "text", value = "", hint, options, ...attrs } = {}) {
  let input;
  if (kind === "select") {
    input = h("select", { id, name: id, ...attrs });
    for (const option of options || []) {
      input.append(h("option", { value: option.value, text: option.label }));
    }
    input.value = value;
  } else if (kind === "textarea") {
    input = h("textarea", { id, name: id, ...attrs });
    input.value = value;
  } else {
    input = h("input", { id, name: id, type: kind, ...attrs });
    input.value = value ?? "";
  }
  const hintId = hint ? `${id}-hint` : null;
  if (hintId) input.setAttribute("aria-describedby", hintId);
  const wrapper = h(
    "div",
    { class: "field" },
    h("label", { for: id, text: label }),
    hint ? h("p", { class: "hint", id: hintId, text: hint }) : null,
    input,
  );
  return { field: wrapper, input };
}

/** A button with an optional icon. */
export function button(label, { kind = "secondary", iconName, type = "button", ...attrs } = {}) {
  return h(
    "button",
    { type, class: `btn btn-${kind}`, ...attrs },
    iconName ? icon(iconName) : null,
    h("span", { text: label }),
  );
}

/** A modal confirmation dialog; resolves to true when the user confirms. */
export function confirmDialog({ title, message, confirmLabel = "Confirm", danger = false }) {
  return new Promise((resolve) => {
    const heading = h("h2", { id: "dialog-title", text: title });
    const cancel = button("Cancel", { value: "cancel", type: "submit" });
    const ok = button(confirmLabel, {
      kind: danger ? "danger" : "primary",
      value: "confirm",
      type: "submit",
    });
    const dialog = h(
      "dialog",
      { class: "dialog", "aria-labelledby": "dialog-title", "aria-describedby": "dialog-text" },
      h(
        "form",
        { method: "dialog" },
        heading,
        h("p", { id: "dialog-text", text: message }),
        h("div", { class: "actions" }, cancel, ok),
      ),
    );
    const opener = document.activeElement;
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "confirm");
      dialog.remove();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** A view's h1 (focusable by the router) and the document title. */
export function pageHeading(ctx, text) {
  ctx.setTitle(text);
  const heading = h("h1", { id: "page-title", tabindex: "-1", text });
  ctx.main.append(heading);
  return heading;
}

/** The href of a route with query parameters (empty values left out): "#/path?a=1". */
export function routeHref(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) if (value) query.set(key, String(value));
  const text = query.toString();
  return text ? `#${path}?${text}` : `#${path}`;
}

/** Text for a confidence between 0 and 1. */
export function percent(value) {
  if (typeof value !== "number" || Number.isNaN(value)) return null;
  return `${Math.round(value * 100)} %`;
}
