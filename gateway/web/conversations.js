// The conversation list (newest first, paged) and what other pages share with it: titles,
// paging, deleting with confirmation.

import { confirmDialog, h, icon, pageHeading, replace, time } from "./dom.js";
import { get, request } from "./api.js";
import { showNotice, showProblem } from "./feedback.js";

export const PAGE_SIZE = 20;

export function conversationTitle(conversation) {
  return (conversation && conversation.title) || "Untitled conversation";
}

/** Ask before deleting; resolves to true once the conversation is gone. */
export async function deleteConversation(conversation) {
  const confirmed = await confirmDialog({
    title: "Delete this conversation?",
    message: `“${conversationTitle(conversation)}” and all its messages will be deleted. ` +
      "This cannot be undone.",
    confirmLabel: "Delete",
    danger: true,
  });
  if (!confirmed) return false;
  await request("DELETE", `/api/conversations/${encodeURIComponent(conversation.id)}`);
  return true;
}

/** Page number (1-based) from the route's query. */
export function pageOf(query) {
  const page = Number.parseInt(query.get("page") || "1", 10);
  return Number.isFinite(page) && page > 0 ? page : 1;
}

/** Previous / next links for a page of total items. */
export function pager(page, total, limit, hrefFor) {
  const pages = Math.max(1, Math.ceil(total / limit));
  const first = total === 0 ? 0 : (page - 1) * limit + 1;
  const last = Math.min(total, page * limit);
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    page > 1
      ? h("a", { href: hrefFor(page - 1), class: "btn btn-secondary", rel: "prev", text: "Previous" })
      : null,
    h("span", { class: "pager-status", text: `${first}–${last} of ${total} · page ${page} of ${pages}` }),
    page < pages
      ? h("a", { href: hrefFor(page + 1), class: "btn btn-secondary", rel: "next", text: "Next" })
      : null,
  );
}

/** The list of conversations; options: showOwner, onDelete(conversation), onOwner(conversation). */
export function conversationList(items, { showOwner = false, onDelete, onOwner } = {}) {
  return h(
    "ul",
    { class: "conversation-list" },
    items.map((conversation) => {
      const title = conversationTitle(conversation);
      return h(
        "li",
        { class: "conversation-item" },
        h(
          "div",
          { class: "conversation-main" },
          h("a", {
            href: `#/conversations/${encodeURIComponent(conversation.id)}`,
            class: "conversation-link",
            text: title,
          }),
          h(
            "p",
            { class: "muted small" },
            showOwner
              ? [
                  onOwner
                    ? h("button", {
                        type: "button",
                        class: "link-button",
                        text: conversation.owner_name || conversation.owner_sub,
                        title: "Show only this person's conversations",
                        on: { click: () => onOwner(conversation) },
                      })
                    : h("span", { text: conversation.owner_name || conversation.owner_sub }),
                  " · ",
                ]
              : null,
            "Updated ",
            time(conversation.updated_at),
          ),
        ),
        onDelete
          ? h(
              "button",
              {
                type: "button",
                class: "btn btn-icon btn-danger-quiet",
                "aria-label": `Delete conversation “${title}”`,
                title: "Delete",
                on: { click: () => onDelete(conversation) },
              },
              icon("trash"),
            )
          : null,
      );
    }),
  );
}

export async function conversationsView(ctx) {
  pageHeading(ctx, "Your conversations");
  const toolbar = h(
    "div",
    { class: "toolbar" },
    h("a", { href: "#/new", class: "btn btn-primary" }, icon("plus"), "New conversation"),
  );
  const body = h("div", { class: "list-region", "aria-busy": "true" }, h("p", { text: "Loading…" }));
  ctx.main.append(toolbar, body);
  const page = pageOf(ctx.query);
  const load = async () => {
    body.setAttribute("aria-busy", "true");
    const result = await get(
      "/api/conversations",
      { limit: PAGE_SIZE, offset: (page - 1) * PAGE_SIZE },
      { signal: ctx.signal },
    );
    body.removeAttribute("aria-busy");
    if (result.total === 0) {
      replace(
        body,
        h(
          "div",
          { class: "empty card" },
          h("p", { text: "No conversations yet." }),
          h("p", {}, h("a", { href: "#/new", text: "Ask your first question" })),
        ),
      );
      return;
    }
    if (result.items.length === 0 && page > 1) {
      ctx.navigate("/", { replace: true });
      return;
    }
    const onDelete = async (conversation) => {
      try {
        if (await deleteConversation(conversation)) {
          showNotice(`Deleted “${conversationTitle(conversation)}”.`);
          await load();
        }
      } catch (error) {
        showProblem(error);
      }
    };
    replace(
      body,
      conversationList(result.items, { onDelete }),
      pager(page, result.total, PAGE_SIZE, (n) => `#/?page=${n}`),
    );
  };
  await load();
}
