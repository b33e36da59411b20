// Telling the user what happened: the error banner (problem details made readable), polite
// status announcements for screen readers.

import { h, replace, icon } from "./dom.js";

let countdown = null;

/** Announce text through the page's polite status region (screen readers only). */
export function announce(text) {
  const status = document.getElementById("status");
  if (!status) return;
  status.textContent = "";
  // A fresh text node after clearing makes repeated messages announced again.
  window.setTimeout(() => {
    status.textContent = text;
  }, 50);
}

export function clearBanner() {
  if (countdown) window.clearInterval(countdown);
  countdown = null;
  replace(document.getElementById("banner"));
}

/** Human sentences for an ApiError (or any error). */
export function describe(error) {
  if (!error || typeof error !== "object") return { title: "Something went wrong", lines: [] };
  const lines = [];
  if (error.status === 429) {
    const wait = error.retryAfter;
    lines.push(
      wait === undefined
        ? "Too many requests in a short time. Wait a moment, then try again."
        : `Too many requests in a short time. Try again in ${wait} seconds.`,
    );
  } else if (error.detail && error.detail !== error.title) {
    lines.push(error.detail);
  } else if (!error.status && error.message) {
    lines.push(error.message);
  }
  for (const item of error.errors || []) {
    const where = Array.isArray(item.loc)
      ? item.loc.filter((p) => p !== "body").join(" ").replaceAll("_", " ")
      : "";
    const text = fieldMessage(item);
    if (text) lines.push(where ? `${where}: ${text}.` : `${text}.`);
  }
  return { title: error.title || "Something went wrong", lines };
}

/** A validation message without the validator's "Value error, " prefix. */
function fieldMessage(item) {
  const text = typeof item.msg === "string" ? item.msg.replace(/^Value error, /, "") : "";
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : "";
}

/** A block describing error, for placing inside a view (not announced by itself). */
export function problemBlock(error) {
  const { title, lines } = describe(error);
  return h(
    "div",
    { class: "problem" },
    h("p", { class: "problem-title" }, icon("alert"), h("strong", { text: title })),
    lines.map((line) => h("p", { text: line })),
    reference(error),
  );
}

function reference(error) {
  const parts = [];
  if (error && error.code) parts.push(`code ${error.code}`);
  if (error && error.requestId) parts.push(`reference ${error.requestId}`);
  return parts.length ? h("p", { class: "problem-ref", text: parts.join(" · ") }) : null;
}

/** Show error in the page's alert banner; 429 counts down its Retry-After. */
export function showProblem(error) {
  if (error && error.name === "AbortError") return;
  if (error && error.status === 401) return; // the app shows the sign-in page instead
  clearBanner();
  const region = document.getElementById("banner");
  const { title, lines } = describe(error);
  const message = h("div", { class: "banner-text" }, h("strong", { text: title }));
  const detail = h("span", { class: "banner-detail" });
  if (lines.length) detail.textContent = " " + lines.join(" ");
  message.append(detail);
  const ref = reference(error);
  if (ref) message.append(ref);
  const close = h(
    "button",
    { type: "button", class: "banner-close", "aria-label": "Dismiss message", text: "×" },
  );
  close.addEventListener("click", () => {
    clearBanner();
    document.getElementById("main")?.focus();
  });
  replace(region, h("div", { class: "banner banner-error" }, icon("alert"), message, close));
  if (error && error.status === 429 && typeof error.retryAfter === "number") {
    let left = error.retryAfter;
    countdown = window.setInterval(() => {
      left -= 1;
      if (left <= 0) {
        window.clearInterval(countdown);
        countdown = null;
        detail.textContent = " You can try again now.";
      } else {
        detail.textContent = ` Too many requests in a short time. Try again in ${left} seconds.`;
      }
    }, 1000);
  }
}

let flashed = null;

/** A notice to show after the next navigation (e.g. "Deleted" when leaving a deleted page). */
export function flash(text) {
  flashed = text;
}

/** Show the flashed notice, if any (the router calls this after clearing the banner). */
export function showFlash() {
  if (flashed === null) return;
  const text = flashed;
  flashed = null;
  showNotice(text);
}

/** Show a short success or information message in the banner. */
export function showNotice(text) {
  clearBanner();
  const close = h(
    "button",
    { type: "button", class: "banner-close", "aria-label": "Dismiss message", text: "×" },
  );
  close.addEventListener("click", clearBanner);
  replace(
    document.getElementById("banner"),
    h("div", { class: "banner banner-info" }, h("div", { class: "banner-text", text }), close),
  );
}

/** Clear the inline messages markInvalid added to inputs ({field name: input}). */
export function clearInvalid(inputs) {
  for (const input of Object.values(inputs)) {
    input.removeAttribute("aria-invalid");
    const message = document.getElementById(`${input.id}-error`);
    if (message) message.remove();
    const described = (input.getAttribute("aria-describedby") || "")
      .split(" ")
      .filter((id) => id && id !== `${input.id}-error`);
    if (described.length) input.setAttribute("aria-describedby", described.join(" "));
    else input.removeAttribute("aria-describedby");
  }
}

/** Show a 422's per-field messages next to their inputs; focus the first. True if any shown. */
export function markInvalid(inputs, error) {
  clearInvalid(inputs);
  let first = null;
  for (const item of (error && error.errors) || []) {
    const name = Array.isArray(item.loc) ? item.loc[item.loc.length - 1] : null;
    const input = inputs[name];
    if (!input || document.getElementById(`${input.id}-error`)) continue;
    const message = h("p", {
      class: "field-error",
      id: `${input.id}-error`,
      text: fieldMessage(item) || "Check this value.",
    });
    input.setAttribute("aria-invalid", "true");
    input.setAttribute(
      "aria-describedby",
      [input.getAttribute("aria-describedby"), message.id].filter(Boolean).join(" "),
    );
    input.after(message);
    first = first || input;
  }
  if (first) first.focus();
  return Boolean(first);
}
