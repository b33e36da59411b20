// The chat view: one conversation's messages, and the question box that streams the answer.

import { button, h, icon, pageHeading, percent, replace, time } from "./dom.js";
import { ApiError, budgetWarning, get, request, streamAnswer } from "./api.js";
import { announce, clearBanner, flash, showProblem } from "./feedback.js";
import { conversationTitle, deleteConversation } from "./conversations.js";

const TITLE_CHARS = 80;

function agentLabel(agents, name) {
  if (!name) return "Assistant";
  const agent = agents.find((candidate) => candidate.name === name);
  if (agent) return `${agent.title} agent`;
  return `${name.charAt(0).toUpperCase()}${name.slice(1)} agent`;
}

function metaText(agents, { agent, confidence, method }) {
  const parts = [agentLabel(agents, agent)];
  if (method === "explicit") parts.push("chosen by you");
  else {
    const value = percent(confidence);
    if (value) parts.push(`confidence ${value}`);
  }
  return parts.join(" · ");
}

/** One message bubble; returns the element and setters for streaming into it. */
function messageItem(agents, message) {
  const mine = message.role === "user";
  const label = h("p", { class: "message-label", text: mine ? "You" : "Assistant" });
  const text = document.createTextNode(message.content || "");
  const content = h("div", { class: "message-content" }, text);
  const badges = h("p", { class: "message-badges" });
  const note = h("div", { class: "message-note" });
  const item = h(
    "li",
    { class: `message ${mine ? "message-user" : "message-assistant"}` },
    label,
    content,
    badges,
    note,
  );
  const setMeta = (meta) => {
    label.textContent = metaText(agents, meta);
  };
  const setStatus = (status) => {
    replace(badges);
    if (status === "streaming") badges.append(h("span", { class: "badge badge-neutral", text: "Being written" }));
    if (status === "partial") badges.append(h("span", { class: "badge badge-warn", text: "Partial answer" }));
    if (status === "failed") badges.append(h("span", { class: "badge badge-error", text: "No answer" }));
  };
  if (!mine && message.agent) setMeta(message);
  if (!mine) setStatus(message.status);
  if (message.created_at) label.append(" · ", time(message.created_at));
  return { item, text, content, note, setMeta, setStatus };
}

/** A conversation's title from its first question: at most TITLE_CHARS, cut between words. */
export function titleFrom(question) {
  const text = question.replace(/\s+/g, " ").trim();
  if (text.length <= TITLE_CHARS) return text;
  const cut = text.slice(0, TITLE_CHARS - 1);
  const space = cut.lastIndexOf(" ");
  return `${(space > TITLE_CHARS / 2 ? cut.slice(0, space) : cut).replace(/[\s,;:.-]+$/, "")}…`;
}

/** Bring the latest answer's start into view (on a phone the question box covers the bottom). */
function showLatest(log) {
  const last = log.lastElementChild;
  if (last) last.scrollIntoView({ block: "start" });
}

export async function chatView(ctx) {
  const id = ctx.params[0] || null;
  const title = pageHeading(ctx, id ? "Conversation" : "New conversation");
  // Back to the list this conversation belongs to: one's own, or everyone's for a manager.
  const back = h("a", { href: "#/", class: "back-link" }, icon("back"), "Your conversations");
  ctx.main.prepend(back);
  const info = h("p", { class: "muted small conversation-info" });
  const actions = h("div", { class: "toolbar" });
  const log = h("ol", { class: "messages" });
  const logRegion = h(
    "div",
    { class: "message-log", role: "log", "aria-live": "polite", "aria-label": "Messages" },
    log,
  );
  ctx.main.append(info, actions, logRegion);

  const state = { conversation: null, agents: [], busy: false, controller: null };
  const agentsLoad = get("/api/agents", undefined, { signal: ctx.signal })
    .then((result) => (state.agents = (result && result.items) || []))
    .catch((error) => {
      if (error.name !== "AbortError") state.agents = [];
      return [];
    });

  if (id) {
    try {
      state.conversation = await get(`/api/conversations/${encodeURIComponent(id)}`, undefined, {
        signal: ctx.signal,
      });
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        ctx.setTitle("Conversation not found");
        title.textContent = "Conversation not found";
        ctx.main.append(
          h("p", { text: "This conversation does not exist, or it was deleted." }),
        );
        return;
      }
      throw error;
    }
  }
  await agentsLoad;
  if (ctx.signal.aborted) return;

  const me = ctx.session.user && ctx.session.user.sub;
  const owned = !state.conversation || state.conversation.owner_sub === me;
  const showHeader = () => {
    const conversation = state.conversation;
    if (!conversation) return;
    const name = conversationTitle(conversation);
    title.textContent = name;
    ctx.setTitle(name);
    replace(
      info,
      owned ? null : [`By ${conversation.owner_name || conversation.owner_sub} · `],
      "Started ",
      time(conversation.created_at),
    );
  };
  showHeader();
  for (const message of (state.conversation && state.conversation.messages) || []) {
    log.append(messageItem(state.agents, message).item);
  }
  if (!owned) {
    back.setAttribute("href", "#/admin/conversations");
    back.lastChild.textContent = "Everyone's conversations";
    ctx.main.append(
      h("p", { class: "notice", text: "You are reading another person's conversation. It is read-only." }),
    );
    showLatest(log);
    return;
  }

  const addDelete = () =>
    actions.append(
      button("Delete conversation", {
        kind: "danger-quiet",
        iconName: "trash",
        on: {
          click: async () => {
            try {
              if (await deleteConversation(state.conversation)) {
                flash(`Deleted “${conversationTitle(state.conversation)}”.`);
                ctx.navigate("/");
              }
            } catch (error) {
              showProblem(error);
            }
          },
        },
      }),
    );
  if (state.conversation) addDelete();

  // Composer
  const agentSelect = h("select", { id: "agent", name: "agent" });
  agentSelect.append(h("option", { value: "", text: "Automatic" }));
  for (const agent of state.agents) {
    agentSelect.append(h("option", { value: agent.name, text: agent.title }));
  }
  const question = h("textarea", {
    id: "question",
    name: "question",
    rows: "3",
    required: true,
    maxlength: "32000",
    "aria-describedby": "question-hint",
    placeholder: "Describe the fault, the part or the task…",
  });
  const send = button("Send", { kind: "primary", iconName: "send", type: "submit" });
  const stop = button("Stop", { kind: "secondary", iconName: "stop", hidden: true });
  const form = h(
    "form",
    { class: "composer", "aria-label": "Ask a question" },
    h(
      "div",
      { class: "field composer-question" },
      h("label", { for: "question", text: "Your question" }),
      question,
      h("p", {
        class: "hint",
        id: "question-hint",
        text: "Enter sends; Shift+Enter starts a new line.",
      }),
    ),
    h(
      "div",
      { class: "composer-side" },
      state.agents.length
        ? h("div", { class: "field" }, h("label", { for: "agent", text: "Agent" }), agentSelect)
        : null,
      h("div", { class: "composer-actions" }, stop, send),
    ),
  );
  ctx.main.append(form);
  showLatest(log);

  question.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => state.controller && state.controller.abort());
  ctx.signal.addEventListener("abort", () => state.controller && state.controller.abort());

  const setBusy = (busy) => {
    state.busy = busy;
    send.disabled = busy;
    stop.hidden = !busy;
    question.readOnly = busy;
    logRegion.setAttribute("aria-busy", busy ? "true" : "false");
  };

  const nearBottom = () =>
    window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 120;

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (state.busy) return;
    const content = question.value.trim();
    if (!content) {
      question.focus();
      return;
    }
    clearBanner();
    setBusy(true);
    try {
      if (!state.conversation) {
        const created = await request("POST", "/api/conversations", {
          body: { title: titleFrom(content) },
        });
        state.conversation = { ...created, messages: [] };
        ctx.replaceRoute(`/conversations/${encodeURIComponent(created.id)}`);
        showHeader();
        addDelete();
      }
      await ask(content);
    } catch (error) {
      showProblem(error);
    } finally {
      setBusy(false);
      if (!ctx.signal.aborted) question.focus();
    }
  });

  async function ask(content) {
    const user = messageItem(state.agents, { role: "user", content });
    log.append(user.item);
    const answer = messageItem(state.agents, { role: "assistant", content: "" });
    answer.item.classList.add("streaming");
    answer.content.setAttribute("data-placeholder", "Waiting for the answer…");
    log.append(answer.item);
    answer.item.scrollIntoView({ block: "nearest" });
    question.value = "";
    state.controller = new AbortController();
    let received = "";
    let finished = false;
    const payload = { content };
    if (agentSelect.value) payload.agent = agentSelect.value;
    const finish = (status) => {
      finished = true;
      answer.item.classList.remove("streaming");
      answer.content.removeAttribute("data-placeholder");
      answer.setStatus(status);
    };
    try {
      await streamAnswer(
        state.conversation.id,
        payload,
        {
          budget: (field) => {
            const text = budgetWarning(field);
            if (text) answer.note.append(h("p", { class: "notice small", text }));
          },
          meta: (meta) => {
            answer.setMeta(meta);
            announce(`${agentLabel(state.agents, meta.agent)} is answering.`);
          },
          delta: (text) => {
            const follow = nearBottom();
            received += text;
            answer.text.appendData(text);
            if (follow) window.scrollTo(0, document.documentElement.scrollHeight);
          },
          done: (done) => {
            finish(done.partial ? "partial" : "complete");
            announce(done.partial ? "The answer is incomplete." : "Answer complete.");
          },
          error: (problem) => {
            finish(received ? "partial" : "failed");
            showProblem(
              new ApiError({
                status: problem.status || 502,
                title: "The answer could not be completed",
                detail: problem.detail,
                code: problem.code,
              }),
            );
          },
        },
        state.controller.signal,
      );
    } catch (error) {
      if (error && error.name === "AbortError") {
        finish(received ? "partial" : "failed");
        answer.note.append(h("p", { class: "muted small", text: "Stopped." }));
        return;
      }
      if (!finished) {
        answer.item.remove();
        user.item.remove();
        question.value = content;
      }
      throw error;
    } finally {
      state.controller = null;
    }
  }

  // A new conversation starts with typing; an open one keeps focus on its heading.
  if (!id) question.focus();
}
