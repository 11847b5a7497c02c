/* Shared by the playground, the chat and the account pages: the API key kept in the
 * browser, calls to this server's API with it, a streamed chat completion read through
 * fetch (Server-Sent Events parsed here), and a safe DOM builder.
 *
 * Everything is on `window.Crossroads`. Text from the server or the model is only ever
 * put into the page as text (textContent), never as HTML.
 */
(function () {
  "use strict";

  const KEY_ITEM = "crossroads.apiKey";
  const API = "/api/v1";

  /* The API key: pasted once on /account/sign-in, kept in localStorage, sent as a bearer
   * token; never put in a URL. */
  const key = {
    get() {
      try {
        return window.localStorage.getItem(KEY_ITEM) || "";
      } catch (_) {
        return "";
      }
    },
    set(value) {
      window.localStorage.setItem(KEY_ITEM, value);
    },
    clear() {
      try {
        window.localStorage.removeItem(KEY_ITEM);
      } catch (_) {
        /* storage unavailable: nothing was kept */
      }
    },
  };

  /* An error answered by the API: its HTTP status and OpenRouter's envelope message. */
  class ApiError extends Error {
    constructor(status, message, body) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.body = body;
    }
  }

  async function errorOf(response) {
    let body = null;
    let message = `${response.status} ${response.statusText}`.trim();
    try {
      body = await response.json();
      if (body && body.error && body.error.message) message = String(body.error.message);
    } catch (_) {
      /* not JSON: the status line says enough */
    }
    return new ApiError(response.status, message, body);
  }

  function headers(apiKey, extra) {
    const out = Object.assign({ Accept: "application/json" }, extra || {});
    if (apiKey) out.Authorization = `Bearer ${apiKey}`;
    return out;
  }

  /* GET (or `init.method`) `path` under /api/v1 with the key; the decoded JSON body.
   * Throws ApiError for a non-2xx answer. */
  async function api(path, init) {
    const options = Object.assign({ method: "GET" }, init || {});
    const apiKey = options.key === undefined ? key.get() : options.key;
    const response = await fetch(API + path, {
      method: options.method,
      headers: headers(apiKey, options.body ? { "Content-Type": "application/json" } : null),
      body: options.body ? JSON.stringify(options.body) : undefined,
      signal: options.signal,
      cache: "no-store",
    });
    if (!response.ok) throw await errorOf(response);
    return response.json();
  }

  /* An incremental Server-Sent Events parser: feed it text as it arrives (`push`), then
   * `end()`. Each event's data lines (joined by "\n") go to `onEvent(data, name)`; comment
   * lines (starting with ":") and unknown fields are ignored. Lines end with "\n" or "\r\n". */
  class SSEParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = "";
      this.data = [];
      this.name = "";
    }
    push(text) {
      this.buffer += text;
      let at = this.buffer.indexOf("\n");
      while (at >= 0) {
        let line = this.buffer.slice(0, at);
        this.buffer = this.buffer.slice(at + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        this.line(line);
        at = this.buffer.indexOf("\n");
      }
    }
    line(line) {
      if (line === "") {
        this.dispatch();
        return;
      }
      if (line.startsWith(":")) return; // a comment: ": OPENROUTER PROCESSING" keep-alives
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") this.data.push(value);
      else if (field === "event") this.name = value;
    }
    dispatch() {
      if (this.data.length) this.onEvent(this.data.join("\n"), this.name);
      this.data = [];
      this.name = "";
    }
    end() {
      if (this.buffer) this.line(this.buffer.replace(/\r$/, ""));
      this.buffer = "";
      this.dispatch();
    }
  }

  /* The reasoning text of a delta: `delta.reasoning`, else the text of its
   * `reasoning_details` (summaries and plain text; encrypted details carry none). */
  function reasoningOf(delta) {
    if (typeof delta.reasoning === "string" && delta.reasoning) return delta.reasoning;
    if (!Array.isArray(delta.reasoning_details)) return "";
    return delta.reasoning_details
      .map((d) => (d && (typeof d.text === "string" ? d.text : d.summary)) || "")
      .filter((t) => typeof t === "string")
      .join("");
  }

  /* POST `body` (a chat request; `stream: true` is added) to /api/v1/chat/completions
   * and read the stream. `on.content(text)` and `on.reasoning(text)` get each delta as it
   * arrives. Resolves with {id, model, provider, usage, finishReason, error, content,
   * reasoning}: `error` is the error object of a mid-stream failure (the stream's last
   * event), null otherwise. Rejects with ApiError when the request is refused before the
   * stream starts, and with an AbortError when `signal` aborts it. */
  async function streamChat(body, on, options) {
    const opts = options || {};
    const handlers = on || {};
    const response = await fetch(`${API}/chat/completions`, {
      method: "POST",
      headers: headers(opts.key === undefined ? key.get() : opts.key, {
        "Content-Type": "application/json",
        Accept: "text/event-stream",
      }),
      body: JSON.stringify(Object.assign({}, body, { stream: true })),
      signal: opts.signal,
      cache: "no-store",
    });
    if (!response.ok) throw await errorOf(response);
    const result = {
      id: null,
      model: null,
      provider: null,
      usage: null,
      finishReason: null,
      error: null,
      content: "",
      reasoning: "",
    };
    let finished = false;
    const parser = new SSEParser((data) => {
      if (finished) return;
      if (data === "[DONE]") {
        finished = true;
        return;
      }
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch (_) {
        return; // not a chunk: nothing to show
      }
      if (!chunk || typeof chunk !== "object") return;
      if (chunk.id) result.id = chunk.id;
      if (chunk.model) result.model = chunk.model;
      if (chunk.provider) result.provider = chunk.provider;
      if (chunk.usage) result.usage = chunk.usage;
      const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
      const delta = (choice && choice.delta) || {};
      const thought = reasoningOf(delta);
      if (thought) {
        result.reasoning += thought;
        if (handlers.reasoning) handlers.reasoning(thought);
      }
      if (typeof delta.content === "string" && delta.content) {
        result.content += delta.content;
        if (handlers.content) handlers.content(delta.content);
      }
      if (choice && choice.finish_reason) result.finishReason = choice.finish_reason;
      if (chunk.error) {
        result.error = chunk.error;
        finished = true;
      }
    });
    // Read to the end even after [DONE] or an error event (the server closes the stream
    // right after them): cancelling the body would abort the request.
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (!finished) parser.push(decoder.decode(value, { stream: true }));
    }
    if (!finished) {
      parser.push(decoder.decode());
      parser.end();
    }
    return result;
  }

  /* An element: `el("a", {href: "/x", class: "btn"}, "text", child)`. Attributes are set
   * with setAttribute (`class`, `for`, data-*, aria-*), children are nodes or text. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  /* USD: "$0.000123", "$12.34"; an em dash for nothing. */
  function usd(value) {
    if (value === null || value === undefined || value === "") return "\u2014";
    const n = Number(value);
    if (!Number.isFinite(n)) return "\u2014";
    if (n === 0) return "$0";
    const text = Math.abs(n) >= 1 ? n.toFixed(2) : n.toFixed(6).replace(/0+$/, "");
    return `$${text.replace(/\.$/, "")}`;
  }

  /* Milliseconds: "850 ms", "1.2 s". */
  function ms(value) {
    if (value === null || value === undefined) return "\u2014";
    const n = Number(value);
    if (!Number.isFinite(n)) return "\u2014";
    return n >= 1000 ? `${(n / 1000).toFixed(1)} s` : `${Math.round(n)} ms`;
  }

  /* A time as the visitor's locale writes it. */
  function when(value) {
    if (!value) return "\u2014";
    const at = new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`);
    return Number.isNaN(at.getTime()) ? String(value) : at.toLocaleString();
  }

  /* The link to a generation's record page. */
  function generationHref(id) {
    return `/account/generation?id=${encodeURIComponent(id)}`;
  }

  window.Crossroads = Object.freeze({
    key,
    api,
    ApiError,
    SSEParser,
    streamChat,
    el,
    usd,
    ms,
    when,
    generationHref,
  });
})();
