// The application shell: who is signed in, the navigation, and the hash router
// (#/, #/new, #/conversations/<id>, #/profile, #/admin/...).

import { h, replace, icon } from "./dom.js";
import { ApiError, get, setCsrfToken } from "./api.js";
import { announce, clearBanner, problemBlock, showFlash, showProblem } from "./feedback.js";

const APP_NAME = "MRO Assistant";

// What the navigation offers; the gateway enforces the same permissions on every request.
const MANAGER_PERMISSIONS = [
  "conversations:read:all",
  "users:manage",
  "audit:read",
  "usage:read",
  "api-keys:manage",
];

const routes = [
  { path: /^\/$/, view: "conversationsView", module: "conversations" },
  { path: /^\/new$/, view: "chatView", module: "chat" },
  { path: /^\/conversations\/([0-9A-Za-z-]{1,64})$/, view: "chatView", module: "chat" },
  { path: /^\/profile$/, view: "profileView", module: "profile" },
  {
    path: /^\/admin\/conversations$/,
    view: "allConversationsView",
    module: "admin",
    permission: "conversations:read:all",
  },
  { path: /^\/admin\/users$/, view: "usersView", module: "users", permission: "users:manage" },
  { path: /^\/admin\/audit$/, view: "auditView", module: "admin", permission: "audit:read" },
  { path: /^\/admin\/usage$/, view: "usageView", module: "admin", permission: "usage:read" },
  { path: /^\/admin\/api-keys$/, view: "apiKeysView", module: "keys", permission: "api-keys:manage" },
];

const modules = {
  conversations: () => import("./conversations.js"),
  chat: () => import("./chat.js"),
  users: () => import("./users.js"),
  profile: () => import("./profile.js"),
  admin: () => import("./admin.js"),
  keys: () => import("./keys.js"),
};

const session = {
  authenticated: false,
  user: null,
  profile: null,
  csrf: "",
  permissions: new Set(),
};
let current = null;
let firstRender = true;

/** Permissions from the profile when the gateway sent them, else derived from the roles. */
function permissionsOf(user, profile) {
  if (profile && Array.isArray(profile.permissions)) return new Set(profile.permissions);
  const roles = new Set((user && user.roles) || []);
  const granted = new Set();
  if (roles.has("manager") || roles.has("admin")) MANAGER_PERMISSIONS.forEach((p) => granted.add(p));
  if (roles.has("admin")) granted.add("users:manage:privileged");
  return granted;
}

function can(permission) {
  return session.permissions.has(permission);
}

function displayName() {
  const profile = session.profile;
  const user = session.user || {};
  if (profile && (profile.first_name || profile.last_name)) {
    return [profile.first_name, profile.last_name].filter(Boolean).join(" ");
  }
  return user.name || user.username || "Signed in";
}

async function loadSession() {
  const body = await get("/auth/session");
  session.authenticated = Boolean(body && body.authenticated);
  session.user = session.authenticated ? body.user : null;
  session.csrf = (session.authenticated && body.csrf_token) || "";
  setCsrfToken(session.csrf);
  session.profile = null;
  if (session.authenticated) {
    try {
      session.profile = await get("/api/me");
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) session.authenticated = false;
      // Without the profile the roles from the session still drive the navigation.
    }
  }
  session.permissions = permissionsOf(session.user, session.profile);
}

function navLink(href, label, iconName) {
  return h("a", { href, class: "nav-link" }, iconName ? icon(iconName) : null, label);
}

function renderChrome() {
  const nav = document.getElementById("nav");
  const account = document.getElementById("account");
  if (!session.authenticated) {
    menuToggle(false);
    nav.hidden = true;
    account.hidden = true;
    replace(nav);
    replace(account);
    return;
  }
  const links = [navLink("#/", "Conversations"), navLink("#/new", "New conversation", "plus")];
  const admin = [];
  if (can("conversations:read:all")) admin.push(navLink("#/admin/conversations", "Everyone's conversations"));
  if (can("users:manage")) admin.push(navLink("#/admin/users", "Users"));
  if (can("audit:read")) admin.push(navLink("#/admin/audit", "Audit"));
  if (can("usage:read")) admin.push(navLink("#/admin/usage", "Usage"));
  if (can("api-keys:manage")) admin.push(navLink("#/admin/api-keys", "API keys"));
  replace(
    nav,
    h("ul", { class: "nav-list" }, links.map((link) => h("li", {}, link))),
    admin.length
      ? h(
          "ul",
          { class: "nav-list nav-admin", "aria-label": "Administration" },
          admin.map((link) => h("li", {}, link)),
        )
      : null,
  );
  nav.hidden = false;
  menuToggle(true);
  const logout = h(
    "form",
    { method: "post", action: "/auth/logout", class: "logout-form" },
    h("input", { type: "hidden", name: "csrf_token", value: session.csrf }),
    h("button", { type: "submit", class: "btn btn-quiet", text: "Sign out" }),
  );
  replace(
    account,
    h("a", { href: "#/profile", class: "nav-link account-link" }, icon("user"), displayName()),
    logout,
  );
  account.hidden = false;
}

// On a phone the navigation and the account fold behind one "Menu" button (CSS shows the button
// only there); any navigation folds them again.
function menuToggle(show) {
  const inner = document.querySelector(".topbar-inner");
  let toggle = document.getElementById("menu-toggle");
  if (!show) {
    if (toggle) toggle.remove();
    inner.classList.remove("has-menu", "menu-open");
    return;
  }
  if (!toggle) {
    toggle = h(
      "button",
      {
        type: "button",
        id: "menu-toggle",
        class: "btn btn-quiet menu-toggle",
        "aria-expanded": "false",
        "aria-controls": "nav account",
        on: {
          click: () => {
            const open = !inner.classList.contains("menu-open");
            inner.classList.toggle("menu-open", open);
            toggle.setAttribute("aria-expanded", String(open));
          },
        },
      },
      icon("menu"),
      h("span", { text: "Menu" }),
    );
    inner.querySelector(".brand").after(toggle);
  }
  inner.classList.add("has-menu");
  foldMenu();
}

function foldMenu() {
  const inner = document.querySelector(".topbar-inner");
  inner.classList.remove("menu-open");
  document.getElementById("menu-toggle")?.setAttribute("aria-expanded", "false");
}

function markCurrent(path) {
  for (const link of document.querySelectorAll(".topbar a.nav-link")) {
    const target = link.getAttribute("href").slice(1);
    const active = target === path || (target === "/" && path.startsWith("/conversations/"));
    if (active) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function setTitle(text) {
  document.title = text ? `${text} · ${APP_NAME}` : APP_NAME;
}

function returnPath() {
  return location.hash.startsWith("#/") ? `/${location.hash}` : "/";
}

function signInView(main, reason) {
  setTitle("Sign in");
  const login = `/auth/login?return_to=${encodeURIComponent(returnPath())}`;
  replace(
    main,
    h(
      "section",
      { class: "signin card", "aria-labelledby": "page-title" },
      h("h1", { id: "page-title", tabindex: "-1", text: "Sign in" }),
      reason ? h("p", { class: "notice", text: reason }) : null,
      h(
        "p",
        {},
        "MRO Assistant answers questions on maintenance documentation, troubleshooting, " +
          "planning and compliance. Sign in with your company account to continue.",
      ),
      h("p", {}, h("a", { href: login, class: "btn btn-primary btn-large", text: "Sign in" })),
      h(
        "p",
        { class: "muted" },
        "No account yet? ",
        h("a", { href: "/auth/register", text: "Register" }),
        " — new accounts start as technician.",
      ),
    ),
  );
}

function messageView(main, title, text) {
  setTitle(title);
  replace(
    main,
    h("h1", { id: "page-title", tabindex: "-1", text: title }),
    h("p", { text }),
    h("p", {}, h("a", { href: "#/", text: "Back to your conversations" })),
  );
}

function parseHash() {
  const hash = location.hash.startsWith("#/") ? location.hash.slice(1) : "/";
  const [path, query = ""] = hash.split("?");
  return { path, query: new URLSearchParams(query) };
}

/** Go to a route (hash path such as "/conversations/42"). */
function navigate(path, { replace: replaceEntry = false } = {}) {
  const target = `#${path}`;
  if (replaceEntry) {
    history.replaceState(null, "", target);
    render();
  } else if (location.hash === target) {
    render();
  } else {
    location.hash = target;
  }
}

function focusHeading(main) {
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  } else {
    main.focus();
  }
}

async function render(reason) {
  const main = document.getElementById("main");
  if (current) current.abort();
  current = new AbortController();
  const signal = current.signal;
  const focus = !firstRender;
  firstRender = false;
  clearBanner();
  showFlash();
  foldMenu();
  if (!session.authenticated) {
    renderChrome();
    signInView(main, reason);
    if (focus) focusHeading(main);
    return;
  }
  const { path, query } = parseHash();
  markCurrent(path);
  let params = [];
  const route = routes.find((candidate) => {
    const match = candidate.path.exec(path);
    if (match) params = match.slice(1);
    return Boolean(match);
  });
  if (!route) {
    messageView(main, "Page not found", "There is no page at this address.");
    if (focus) focusHeading(main);
    return;
  }
  if (route.permission && !can(route.permission)) {
    messageView(main, "Not available", "Your role does not give access to this page.");
    if (focus) focusHeading(main);
    return;
  }
  main.setAttribute("aria-busy", "true");
  let module;
  try {
    module = await modules[route.module]();
  } catch {
    main.removeAttribute("aria-busy");
    messageView(main, "Could not load the page", "Reload the page to try again.");
    return;
  }
  if (signal.aborted) return;
  replace(main);
  // After a view changes the address itself (a new conversation got its id): no re-render.
  const replaceRoute = (next) => {
    history.replaceState(null, "", `#${next}`);
    markCurrent(next);
  };
  const context = { main, params, query, session, can, navigate, replaceRoute, setTitle, signal };
  // Views add their heading before their first await, so focus can move to it at once.
  const done = module[route.view](context);
  main.removeAttribute("aria-busy");
  if (focus) focusHeading(main);
  try {
    await done;
  } catch (error) {
    if (signal.aborted || (error && error.name === "AbortError")) return;
    showProblem(error);
  }
}

function bootError(main, error) {
  setTitle("Unavailable");
  replace(
    main,
    h("h1", { id: "page-title", tabindex: "-1", text: "The assistant is not available" }),
    problemBlock(error),
    h(
      "p",
      {},
      h("button", {
        type: "button",
        class: "btn btn-primary",
        text: "Try again",
        on: { click: () => start() },
      }),
    ),
  );
}

async function start() {
  const main = document.getElementById("main");
  try {
    await loadSession();
  } catch (error) {
    bootError(main, error);
    return;
  }
  renderChrome();
  render();
}

window.addEventListener("mro:unauthenticated", () => {
  if (!session.authenticated) return;
  session.authenticated = false;
  session.user = null;
  session.profile = null;
  session.csrf = "";
  session.permissions = new Set();
  setCsrfToken(null);
  render("Your session has ended. Sign in again to continue.");
  announce("Your session has ended.");
});

window.addEventListener("hashchange", () => {
  if (location.hash === "" || location.hash.startsWith("#/")) render();
});

document.addEventListener("click", (event) => {
  const link = event.target instanceof Element ? event.target.closest(".skip-link") : null;
  if (!link) return;
  event.preventDefault();
  const main = document.getElementById("main");
  focusHeading(main);
});

start();
