/* The account pages: /account/sign-in (check a pasted key with GET /api/v1/key, keep it in
 * localStorage), /account (the key, and for the management key the credits, activity and
 * keys; the last generations) and /account/generation?id= (one record). Every value from
 * the server is rendered as text (see stream.js `el`). */
(function () {
  "use strict";

  const C = window.Crossroads;
  if (!C) return;
  const $ = (id) => document.getElementById(id);
  const DASH = "\u2014";

  function show(node, on) {
    if (node) node.hidden = !on;
  }

  function fail(error) {
    const box = $("account-error");
    if (!box) return;
    box.textContent = error && error.message ? error.message : String(error);
    box.hidden = false;
    if (error && error.status === 401) {
      box.textContent += " The stored key was not accepted: sign in again.";
      box.append(" ", C.el("a", { href: "/account/sign-in" }, "Sign in"));
    }
  }

  function signOut() {
    C.key.clear();
    window.location.assign("/account/sign-in");
  }

  /* A same-site path to go to after signing in (never another origin). */
  function nextPath() {
    const next = new URLSearchParams(window.location.search).get("next") || "";
    let target;
    try {
      target = new URL(next, window.location.origin);
    } catch (error) {
      return "/account";
    }
    if (!next.startsWith("/") || target.origin !== window.location.origin) return "/account";
    return target.pathname + target.search + target.hash;
  }

  function text(value) {
    if (value === null || value === undefined || value === "") return DASH;
    if (typeof value === "boolean") return value ? "Yes" : "No";
    if (Array.isArray(value)) return value.length ? value.join(", ") : DASH;
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function facts(dl, pairs) {
    dl.replaceChildren();
    for (const [label, value] of pairs) {
      dl.append(C.el("div", {}, C.el("dt", {}, label), C.el("dd", {}, value instanceof Node ? value : text(value))));
    }
  }

  function row(cells) {
    const tr = C.el("tr");
    for (const cell of cells) {
      const [value, cls] = Array.isArray(cell) ? cell : [cell, null];
      tr.append(C.el("td", { class: cls }, value instanceof Node ? value : text(value)));
    }
    return tr;
  }

  function fillTable(table, emptyNote, rows) {
    const body = table.tBodies[0];
    body.replaceChildren(...rows);
    show(emptyNote, rows.length === 0);
  }

  function limitText(limit) {
    return limit === null || limit === undefined ? "No limit" : C.usd(limit);
  }

  function tokenCount(value) {
    return value === null || value === undefined ? DASH : Number(value).toLocaleString();
  }

  /* -- /account/sign-in ---------------------------------------------------------------- */

  async function signInPage(form) {
    const input = $("api-key");
    const error = $("sign-in-error");
    const status = $("sign-in-status");
    const submit = $("sign-in-submit");
    const signedIn = $("signed-in");
    const stored = C.key.get();
    if (stored) {
      show(signedIn, true);
      try {
        const info = (await C.api("/key", { key: stored })).data;
        $("signed-in-as").textContent = ` with the key “${info.name || info.label}”`;
      } catch (_) {
        /* the stored key no longer works: the form below replaces it */
      }
    }
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const candidate = input.value.trim();
      error.hidden = true;
      if (!candidate) {
        error.textContent = "Paste an API key.";
        error.hidden = false;
        input.focus();
        return;
      }
      submit.disabled = true;
      status.textContent = "Checking the key…";
      try {
        const info = (await C.api("/key", { key: candidate })).data;
        C.key.set(candidate);
        input.value = "";
        status.textContent = `Signed in with “${info.name || info.label}”.`;
        window.location.assign(nextPath());
      } catch (err) {
        error.textContent =
          err && err.status === 401
            ? "This key is not valid here (unknown, disabled or expired)."
            : `The key could not be checked: ${err && err.message ? err.message : err}`;
        error.hidden = false;
        status.textContent = "";
        input.focus();
      } finally {
        submit.disabled = false;
      }
    });
  }

  /* -- /account ------------------------------------------------------------------------ */

  function keyFacts(info) {
    const rate = info.rate_limit || {};
    const free = info.free_model_daily_requests || {};
    facts($("key-info"), [
      ["Name", info.name],
      ["Key", info.label],
      ["Kind", info.is_management_key ? "Management key" : "API key"],
      ["Limit", limitText(info.limit)],
      ["Limit remaining", info.limit === null ? DASH : C.usd(info.limit_remaining)],
      ["Limit resets", info.limit_reset || "Never"],
      ["Spend (all time)", C.usd(info.usage)],
      ["Today", C.usd(info.usage_daily)],
      ["This week", C.usd(info.usage_weekly)],
      ["This month", C.usd(info.usage_monthly)],
      ["Rate limit", rate.requests ? `${rate.requests} requests / ${rate.interval}` : DASH],
      ["Tokens per minute", info.tokens_per_minute || "No limit"],
      ["Free-model requests today", free.limit ? `${free.used} of ${free.limit}` : DASH],
      ["Expires", info.expires_at ? C.when(info.expires_at) : "Never"],
    ]);
    const rails = info.guardrails || {};
    const pairs = Object.entries(rails).filter(([, v]) => v !== null && v !== undefined);
    facts($("key-guardrails"), pairs.length ? pairs.map(([k, v]) => [k.replace(/_/g, " "), v]) : [["Guardrails", "None"]]);
  }

  async function loadManagement() {
    const [credits, activity, keys] = await Promise.all([
      C.api("/credits"),
      C.api("/activity"),
      C.api("/keys?include_disabled=true"),
    ]);
    const c = credits.data;
    facts($("credits"), [
      ["Credits added", C.usd(c.total_credits)],
      ["Used", C.usd(c.total_usage)],
      ["Balance", C.usd(Number(c.total_credits) - Number(c.total_usage))],
    ]);
    const days = activity.data
      .slice()
      .sort((a, b) => (a.date < b.date ? 1 : a.date > b.date ? -1 : 0))
      .map((a) =>
        row([
          a.date,
          a.model,
          a.provider_name,
          [tokenCount(a.requests), "num"],
          [tokenCount(a.prompt_tokens), "num"],
          [tokenCount(a.completion_tokens), "num"],
          [C.usd(a.usage), "num"],
        ]),
      );
    fillTable($("activity-table"), $("activity-empty"), days);
    const keyRows = keys.data.map((k) =>
      row([
        k.name,
        C.el("code", {}, k.label),
        k.disabled ? "Disabled" : "Active",
        [limitText(k.limit), "num"],
        [k.limit === null ? DASH : C.usd(k.limit_remaining), "num"],
        [C.usd(k.usage), "num"],
        [k.requests_per_minute || DASH, "num"],
        C.when(k.created_at),
      ]),
    );
    fillTable($("keys-table"), $("keys-empty"), keyRows);
  }

  async function loadGenerations() {
    const records = (await C.api("/generations?limit=50")).data;
    const rows = records.map((g) => {
      const tokens = [g.tokens_prompt, g.tokens_completion].every((t) => t === null || t === undefined)
        ? DASH
        : `${tokenCount(g.tokens_prompt)} / ${tokenCount(g.tokens_completion)}`;
      const tr = row([
        C.when(g.created_at),
        g.model,
        g.provider_name,
        [tokens, "num"],
        [C.usd(g.total_cost), "num"],
        [C.ms(g.latency), "num"],
        g.error ? "error" : g.cancelled ? "cancelled" : g.finish_reason,
        C.el("a", { href: C.generationHref(g.id), class: "generation-link" }, "View"),
      ]);
      tr.setAttribute("data-generation-id", g.id);
      return tr;
    });
    fillTable($("generations-table"), $("generations-empty"), rows);
  }

  async function accountPage() {
    const stored = C.key.get();
    show($("account-signed-out"), !stored);
    if (!stored) return;
    const signOutButton = $("sign-out");
    show(signOutButton, true);
    signOutButton.addEventListener("click", signOut);
    let info;
    try {
      info = (await C.api("/key")).data;
    } catch (error) {
      fail(error);
      return;
    }
    show($("account-details"), true);
    keyFacts(info);
    if (info.is_management_key) {
      $("generations-scope").textContent =
        "The latest requests made with every key of this server (GET /api/v1/generations); a request appears a moment after it ends.";
    }
    const refresh = $("generations-refresh");
    refresh.addEventListener("click", () => loadGenerations().catch(fail));
    const work = [loadGenerations()];
    if (info.is_management_key) {
      show($("management"), true);
      work.push(loadManagement());
    }
    const results = await Promise.allSettled(work);
    for (const result of results) if (result.status === "rejected") fail(result.reason);
  }

  /* -- /account/generation?id= --------------------------------------------------------- */

  async function generationPage() {
    const id = new URLSearchParams(window.location.search).get("id") || "";
    $("generation-id").textContent = id;
    const stored = C.key.get();
    show($("account-signed-out"), !stored);
    if (!stored || !id) {
      if (stored) fail(new Error("No generation id in the address."));
      return;
    }
    let g;
    try {
      g = (await C.api(`/generation?id=${encodeURIComponent(id)}`)).data;
    } catch (error) {
      fail(error);
      return;
    }
    show($("generation-details"), true);
    facts($("generation-facts"), [
      ["Model", g.model],
      ["Provider", g.provider_name],
      ["Created", C.when(g.created_at)],
      ["Tokens in", tokenCount(g.tokens_prompt)],
      ["Tokens out", tokenCount(g.tokens_completion)],
      ["Reasoning tokens", tokenCount(g.native_tokens_reasoning)],
      ["Cost", C.usd(g.total_cost)],
      ["Latency", C.ms(g.latency)],
      ["Generation time", C.ms(g.generation_time)],
      ["Finish reason", g.finish_reason],
      ["Streamed", g.streamed],
      ["API", g.api_type],
      ["App", g.app_title || g.http_referer],
    ]);
    const attempts = (g.attempts || []).map((a) =>
      row([a.provider_name, a.endpoint_tag, a.status, [C.ms(a.latency_ms), "num"], a.error]),
    );
    fillTable($("attempts-table"), null, attempts);
    $("generation-json").textContent = JSON.stringify(g, null, 2);
  }

  const signInForm = $("sign-in-form");
  if (signInForm) {
    const out = $("sign-out");
    if (out) out.addEventListener("click", signOut);
    signInPage(signInForm);
  } else if ($("generation")) {
    generationPage();
  } else if ($("account")) {
    accountPage();
  }
})();
