/* The chat page (/chat): conversations kept in localStorage, replies streamed from
 * /api/v1/chat/completions with the key from /account/sign-in (see stream.js).
 *
 * Stored under "crossroads.conversations": a list, newest first, of
 *   {id, title, model, updated, messages: [{role, content, reasoning?, meta?, error?}]}
 * where `meta` is {id, provider, model, usage} of an answer. Only role and content are
 * sent back to the model. Everything is rendered as text.
 */
(function () {
  "use strict";

  const C = window.Crossroads;
  const STORE = "crossroads.conversations";
  const MAX_CONVERSATIONS = 50;

  const form = document.getElementById("chat-form");
  if (!form || !C) return;
  const $ = (id) => document.getElementById(id);
  const modelSelect = $("chat-model");
  const prompt = $("chat-prompt");
  const send = $("chat-send");
  const stop = $("chat-stop");
  const status = $("chat-status");
  const messages = $("messages");
  const list = $("conversations");
  const empty = $("conversations-empty");
  const title = $("conversation-title");
  const notice = $("sign-in-notice");

  let conversations = load();
  let current = null; // the open conversation (null: a new one, not saved yet)
  let controller = null; // aborts the reply being streamed

  function load() {
    try {
      const raw = JSON.parse(window.localStorage.getItem(STORE) || "[]");
      return Array.isArray(raw) ? raw.filter((c) => c && Array.isArray(c.messages)) : [];
    } catch (_) {
      return [];
    }
  }

  function save() {
    conversations.sort((a, b) => (b.updated || 0) - (a.updated || 0));
    conversations = conversations.slice(0, MAX_CONVERSATIONS);
    try {
      window.localStorage.setItem(STORE, JSON.stringify(conversations));
    } catch (_) {
      status.textContent = "This browser did not keep the conversation (storage is full or off).";
    }
  }

  function newId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    return `c${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
  }

  function renderList() {
    list.replaceChildren();
    for (const conversation of conversations) {
      const open = C.el(
        "button",
        {
          type: "button",
          class: "conversation-open",
          "aria-current": current && current.id === conversation.id ? "true" : null,
        },
        conversation.title || "Untitled",
      );
      open.addEventListener("click", () => openConversation(conversation.id));
      const remove = C.el(
        "button",
        {
          type: "button",
          class: "btn btn-small conversation-delete",
          "aria-label": `Delete conversation: ${conversation.title || "Untitled"}`,
        },
        "Delete",
      );
      remove.addEventListener("click", () => deleteConversation(conversation.id));
      list.append(C.el("li", { "data-id": conversation.id }, open, remove));
    }
    empty.hidden = conversations.length > 0;
  }

  /* One message of the transcript; returns the element and its parts to fill. */
  function messageView(message) {
    const who = message.role === "user" ? "You" : "Assistant";
    const article = C.el("article", { class: `message message-${message.role}` });
    article.append(C.el("h3", { class: "message-role" }, who));
    const parts = { article, reasoning: null, reasoningText: null, answer: null, meta: null };
    if (message.role === "assistant") {
      parts.reasoningText = C.el("div", { class: "reasoning-text" }, message.reasoning || "");
      parts.reasoning = C.el(
        "details",
        { class: "reasoning" },
        C.el("summary", {}, "Reasoning"),
        parts.reasoningText,
      );
      parts.reasoning.hidden = !message.reasoning;
      article.append(parts.reasoning);
    }
    parts.answer = C.el("div", { class: "answer" }, message.content || "");
    article.append(parts.answer);
    parts.meta = C.el("p", { class: "message-meta small muted" });
    article.append(parts.meta);
    if (message.meta) fillMeta(parts.meta, message.meta);
    if (message.error) parts.meta.append(C.el("span", { class: "error", role: "alert" }, message.error));
    return parts;
  }

  function fillMeta(node, meta) {
    node.replaceChildren();
    const bits = [];
    if (meta.model) bits.push(meta.model);
    if (meta.provider) bits.push(`via ${meta.provider}`);
    const usage = meta.usage;
    if (usage) {
      if (usage.prompt_tokens !== undefined) bits.push(`${usage.prompt_tokens} in`);
      if (usage.completion_tokens !== undefined) bits.push(`${usage.completion_tokens} out`);
      const details = usage.completion_tokens_details;
      if (details && details.reasoning_tokens) bits.push(`${details.reasoning_tokens} reasoning`);
      if (usage.cost !== undefined) bits.push(C.usd(usage.cost));
    }
    node.append(bits.join(" · "));
    if (meta.id) {
      node.append(" · ");
      node.append(C.el("a", { href: C.generationHref(meta.id), class: "generation-link" }, "Generation record"));
    }
  }

  function renderConversation() {
    messages.replaceChildren();
    const shown = current ? current.messages : [];
    for (const message of shown) messages.append(messageView(message).article);
    title.textContent = current ? current.title || "Untitled" : "New conversation";
    if (current && current.model) {
      const known = Array.from(modelSelect.options).some((o) => o.value === current.model);
      if (known) modelSelect.value = current.model;
    }
    renderList();
  }

  function openConversation(id) {
    if (controller) return; // a reply is streaming: finish or stop it first
    current = conversations.find((c) => c.id === id) || null;
    renderConversation();
    prompt.focus();
  }

  function deleteConversation(id) {
    if (controller && current && current.id === id) controller.abort();
    conversations = conversations.filter((c) => c.id !== id);
    if (current && current.id === id) current = null;
    save();
    renderConversation();
  }

  function numberOf(input) {
    if (!input || input.value.trim() === "") return undefined;
    const n = Number(input.value);
    return Number.isFinite(n) ? n : undefined;
  }

  function requestBody(conversation) {
    const body = {
      model: modelSelect.value,
      messages: conversation.messages
        .filter((m) => !m.error || m.content)
        .map((m) => ({ role: m.role, content: m.content })),
    };
    const temperature = numberOf($("chat-temperature"));
    const maxTokens = numberOf($("chat-max-tokens"));
    const effort = $("chat-reasoning-effort").value;
    if (temperature !== undefined) body.temperature = temperature;
    if (maxTokens !== undefined) body.max_tokens = Math.round(maxTokens);
    if (effort) body.reasoning = { effort };
    return body;
  }

  function busy(on) {
    send.disabled = on;
    stop.disabled = !on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  }

  async function submit(event) {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    if (!C.key.get()) {
      status.textContent = "Sign in with an API key first.";
      if (notice) notice.hidden = false;
      return;
    }
    if (!current) {
      current = { id: newId(), title: text.slice(0, 60), model: modelSelect.value, messages: [] };
      conversations.unshift(current);
    }
    const conversation = current; // "New chat" may change `current` while this streams
    conversation.model = modelSelect.value;
    conversation.updated = Date.now();
    const user = { role: "user", content: text };
    conversation.messages.push(user);
    messages.append(messageView(user).article);
    prompt.value = "";
    const body = requestBody(conversation);
    const reply = { role: "assistant", content: "", reasoning: "" };
    conversation.messages.push(reply);
    save();
    renderList();
    title.textContent = conversation.title;
    const view = messageView(reply);
    view.article.setAttribute("aria-busy", "true");
    messages.append(view.article);

    controller = new AbortController();
    busy(true);
    status.textContent = "Waiting for the first tokens…";
    try {
      const result = await C.streamChat(
        body,
        {
          reasoning(text) {
            reply.reasoning += text;
            if (view.reasoning.hidden) view.reasoning.open = true; // open while it streams
            view.reasoning.hidden = false;
            view.reasoningText.append(text);
          },
          content(text) {
            reply.content += text;
            view.answer.append(text);
            status.textContent = "Streaming…";
          },
        },
        { signal: controller.signal },
      );
      reply.meta = { id: result.id, provider: result.provider, model: result.model, usage: result.usage };
      fillMeta(view.meta, reply.meta);
      if (result.error) {
        reply.error = `The reply stopped: ${result.error.message || "an error"}`;
        view.meta.append(C.el("span", { class: "error", role: "alert" }, ` ${reply.error}`));
      }
      status.textContent = result.error ? "The reply stopped with an error." : "Done.";
    } catch (error) {
      if (error && error.name === "AbortError") {
        reply.error = "Stopped.";
        status.textContent = "Stopped.";
      } else {
        reply.error = error && error.message ? error.message : String(error);
        status.textContent = "The request failed.";
        if (error && error.status === 401 && notice) notice.hidden = false;
      }
      view.meta.append(C.el("span", { class: "error", role: "alert" }, reply.error));
    } finally {
      controller = null;
      busy(false);
      view.article.removeAttribute("aria-busy");
      conversation.updated = Date.now();
      save();
      renderList();
    }
  }

  form.addEventListener("submit", submit);
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => {
    if (controller) controller.abort();
  });
  $("new-conversation").addEventListener("click", () => {
    if (controller) controller.abort();
    current = null;
    renderConversation();
    prompt.focus();
  });
  if (notice) notice.hidden = Boolean(C.key.get());
  busy(false);
  renderConversation();
})();
