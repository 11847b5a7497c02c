/* The model page's Playground tab: one prompt, streamed from /api/v1/chat/completions with
 * the key from /account/sign-in (see stream.js). The model is the form's `data-model`; a
 * provider picked in #provider is sent as `provider: {order: [tag], allow_fallbacks:
 * false}`. Reasoning goes to #reasoning (collapsible), the answer to #answer, the usage and
 * cost to #usage with a link to the generation's record. Everything is rendered as text. */
(function () {
  "use strict";

  const C = window.Crossroads;
  const form = document.getElementById("playground-form");
  if (!form || !C) return;
  const $ = (id) => document.getElementById(id);
  const prompt = $("prompt");
  const send = $("send");
  const stop = $("stop");
  const answer = $("answer");
  const reasoning = $("reasoning");
  const reasoningText = $("reasoning-text");
  const usage = $("usage");
  const error = $("playground-error");
  const status = $("playground-status");
  const notice = $("sign-in-notice");
  let controller = null;

  function numberOf(input) {
    if (!input || input.value.trim() === "") return undefined;
    const n = Number(input.value);
    return Number.isFinite(n) ? n : undefined;
  }

  function body(text) {
    const request = { model: form.dataset.model, messages: [{ role: "user", content: text }] };
    const provider = $("provider") ? $("provider").value : "";
    if (provider) request.provider = { order: [provider], allow_fallbacks: false };
    const temperature = numberOf($("temperature"));
    const maxTokens = numberOf($("max-tokens"));
    const effort = $("reasoning-effort") ? $("reasoning-effort").value : "";
    if (temperature !== undefined) request.temperature = temperature;
    if (maxTokens !== undefined) request.max_tokens = Math.round(maxTokens);
    if (effort) request.reasoning = { effort };
    return request;
  }

  function showError(message) {
    error.textContent = message;
    error.hidden = false;
  }

  function showUsage(result) {
    usage.replaceChildren();
    const bits = [];
    if (result.provider) bits.push(`Provider: ${result.provider}`);
    const u = result.usage;
    if (u) {
      if (u.prompt_tokens !== undefined) bits.push(`${u.prompt_tokens} tokens in`);
      if (u.completion_tokens !== undefined) bits.push(`${u.completion_tokens} out`);
      const details = u.completion_tokens_details;
      if (details && details.reasoning_tokens) bits.push(`${details.reasoning_tokens} reasoning`);
      if (u.cost !== undefined) bits.push(`cost ${C.usd(u.cost)}`);
    }
    if (result.finishReason) bits.push(`finish: ${result.finishReason}`);
    usage.append(bits.join(" · "));
    if (result.id) {
      usage.append(bits.length ? " · " : "");
      usage.append(
        C.el("a", { id: "generation-link", href: C.generationHref(result.id) }, "Generation record"),
      );
    }
    usage.hidden = usage.childNodes.length === 0;
  }

  function busy(on) {
    send.disabled = on;
    stop.disabled = !on;
    form.setAttribute("aria-busy", on ? "true" : "false");
    answer.setAttribute("aria-busy", on ? "true" : "false"); // announced once, when done
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = prompt.value.trim();
    if (!text || controller) return;
    error.hidden = true;
    if (!C.key.get()) {
      showError("Sign in with an API key first.");
      if (notice) notice.hidden = false;
      return;
    }
    answer.replaceChildren();
    reasoningText.replaceChildren();
    reasoning.hidden = true;
    usage.hidden = true;
    usage.replaceChildren();
    controller = new AbortController();
    busy(true);
    status.textContent = "Waiting for the first tokens…";
    try {
      const result = await C.streamChat(
        body(text),
        {
          reasoning(part) {
            if (reasoning.hidden) reasoning.open = true; // shown while it streams; collapsible
            reasoning.hidden = false;
            reasoningText.append(part);
            status.textContent = "Reasoning…";
          },
          content(part) {
            answer.append(part);
            status.textContent = "Streaming…";
          },
        },
        { signal: controller.signal },
      );
      showUsage(result);
      if (result.error) {
        showError(`The reply stopped: ${result.error.message || "an error"}`);
        status.textContent = "Stopped with an error.";
      } else {
        status.textContent = "Done.";
      }
    } catch (err) {
      if (err && err.name === "AbortError") {
        status.textContent = "Stopped.";
      } else {
        showError(err && err.message ? err.message : String(err));
        status.textContent = "The request failed.";
        if (err && err.status === 401 && notice) notice.hidden = false;
      }
    } finally {
      controller = null;
      busy(false);
    }
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  stop.addEventListener("click", () => {
    if (controller) controller.abort();
  });
  if (notice) notice.hidden = Boolean(C.key.get());
  busy(false);
})();
