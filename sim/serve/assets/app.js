"use strict";
// The status page: sign in once, list the sessions, draw their last 24 hours, follow /v1/events live.
// Every text from the server goes into the page as text (textContent), never as HTML.
(function () {
  const DAY_MS = 24 * 3600 * 1000;
  const STATES = ["Initializing", "Valid", "ExpiringSoon", "Expired", "Reinitializing", "Invalid", "Stopped"];
  const MAX_EVENTS_SHOWN = 200;
  const page = {
    csrf: null,
    offsetMs: 0, // server clock minus browser clock
    sessions: new Map(), // id -> view
    timelines: new Map(), // id -> [{at, state}] state changes, oldest first
    source: null,
    refresh: new Map(), // id -> pending refresh timer
  };
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  };
  const now = () => Date.now() + page.offsetMs;

  function show(panel) {
    for (const id of ["signin-panel", "callback-panel", "sessions-panel"]) $(id).hidden = id !== panel && !(panel === "both" && id !== "signin-panel");
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "—";
    if (ms <= 0) return "0s";
    const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h > 0) return h + "h " + String(m).padStart(2, "0") + "m";
    if (m > 0) return m + "m " + String(r).padStart(2, "0") + "s";
    return r + "s";
  }

  function time(ms) {
    const d = new Date(ms);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  async function call(method, url, body, extraHeaders) {
    const headers = Object.assign({}, extraHeaders || {});
    if (method !== "GET" && page.csrf) headers["X-CSRF-Token"] = page.csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let json = null;
    try { json = await response.json(); } catch (_) { json = null; }
    return { status: response.status, ok: response.ok, json };
  }

  // ---- sign in ---------------------------------------------------------------------------------------
  async function signIn(event) {
    event.preventDefault();
    const input = $("token");
    const token = input.value.trim();
    input.value = "";
    if (!token) return;
    const answer = await call("POST", "/v1/signin", undefined, { Authorization: "Bearer " + token });
    if (!answer.ok) {
      $("signin-error").textContent = answer.status === 401 ? "That is not the token." : "Sign-in failed (" + answer.status + ").";
      return;
    }
    $("signin-error").textContent = "";
    page.csrf = answer.json.csrf;
    await afterSignIn();
  }

  async function signOut() {
    await call("POST", "/v1/signout");
    if (page.source) page.source.close();
    page.csrf = null;
    $("signout").hidden = true;
    setConn("off", "signed out");
    show("signin-panel");
  }

  async function afterSignIn() {
    $("signout").hidden = false;
    const callback = location.pathname.match(/^\/callback\/([A-Za-z0-9._-]+)$/);
    const params = new URLSearchParams(location.search);
    if (callback && (params.get("code") || params.get("request_token"))) {
      $("callback-session").textContent = callback[1];
      show("both");
    } else {
      show("sessions-panel");
    }
    await loadSessions();
    openEvents();
  }

  // ---- the login callback -------------------------------------------------------------------------
  async function handInCode() {
    const callback = location.pathname.match(/^\/callback\/([A-Za-z0-9._-]+)$/);
    const params = new URLSearchParams(location.search);
    const body = params.get("code") ? { code: params.get("code") } : { request_token: params.get("request_token") };
    const answer = await call("POST", location.pathname, body);
    // The code is used up either way: take it out of the address bar and the history.
    history.replaceState(null, "", "/");
    $("callback-confirm").hidden = true;
    $("callback-result").textContent = answer.ok
      ? "Handed to session " + callback[1] + "; it logs in now."
      : "Refused: " + ((answer.json && answer.json.detail) || answer.status);
  }

  // ---- sessions ---------------------------------------------------------------------------------------
  async function loadSessions() {
    const answer = await call("GET", "/v1/sessions");
    if (answer.status === 401) return show("signin-panel");
    if (!answer.ok) return;
    page.offsetMs = answer.json.now_ms - Date.now();
    page.sessions.clear();
    for (const view of answer.json.sessions) page.sessions.set(view.id, view);
    $("empty").hidden = page.sessions.size > 0;
    await Promise.all([...page.sessions.keys()].map(loadHistory));
    render();
  }

  async function loadSession(id) {
    const answer = await call("GET", "/v1/sessions/" + encodeURIComponent(id));
    if (answer.ok) {
      page.sessions.set(id, answer.json);
      renderRow(id);
    } else if (answer.status === 404) {
      page.sessions.delete(id);
      render();
    }
  }

  // Coalesces the refreshes a burst of events asks for into one request per session.
  function refreshSoon(id) {
    if (page.refresh.has(id)) return;
    page.refresh.set(id, setTimeout(() => { page.refresh.delete(id); loadSession(id); }, 150));
  }

  // The whole kept transition log (at most 1,000 entries): the state at the window's start comes from
  // the last change before it; without one, nothing is drawn before the first known change.
  async function loadHistory(id) {
    const answer = await call("GET", "/v1/sessions/" + encodeURIComponent(id) + "/history");
    const changes = [];
    if (answer.ok) {
      for (const event of answer.json.events) {
        if (event.type === "state_changed") changes.push({ at: event.at_ms, from: event.data.from, state: event.data.to });
      }
    }
    page.timelines.set(id, changes);
  }

  function render() {
    const body = document.querySelector("#sessions tbody");
    body.replaceChildren();
    for (const id of [...page.sessions.keys()].sort()) {
      const row = el("tr", { "data-session": id });
      body.appendChild(row);
      renderRow(id);
    }
  }

  function renderRow(id) {
    const view = page.sessions.get(id);
    let row = document.querySelector('tr[data-session="' + CSS.escape(id) + '"]');
    if (!view) return;
    if (!row) { render(); return; }
    row.replaceChildren();
    const name = el("td", { class: "id" }, id);
    name.appendChild(el("small", {}, view.broker));
    row.appendChild(name);
    const state = el("td", { class: "state-cell" });
    state.appendChild(el("span", { class: "state", "data-state": view.state }, view.state));
    if (view.invalid_reason) state.appendChild(el("div", { class: "muted" }, view.invalid_reason.text));
    row.appendChild(state);
    row.appendChild(el("td", { class: "generation" }, view.generation));
    const expiry = el("td", { class: "expiry" });
    if (view.token && view.token.expires_at_ms) expiry.setAttribute("data-expires", view.token.expires_at_ms);
    expiry.textContent = expiresIn(view);
    if (view.token) expiry.title = "token " + view.token.fingerprint + ", " + duration(now() - view.token.issued_at_ms) + " old";
    row.appendChild(expiry);
    const failure = el("td", { class: "failure" });
    if (view.last_failure) failure.appendChild(el("div", { class: "why" }, view.last_failure.text));
    if (view.waiting_for) failure.appendChild(el("div", { class: "wait" }, view.waiting_for.text));
    if (!view.last_failure && !view.waiting_for) failure.appendChild(el("span", { class: "muted" }, "—"));
    row.appendChild(failure);
    const timeline = el("td", { class: "timeline-cell" });
    timeline.appendChild(drawTimeline(id, view));
    const axis = el("div", { class: "axis" });
    axis.appendChild(el("span", {}, "−24 h"));
    axis.appendChild(el("span", {}, "−12 h"));
    axis.appendChild(el("span", {}, "now"));
    timeline.appendChild(axis);
    row.appendChild(timeline);
    const actions = el("td", { class: "actions" });
    actions.appendChild(button("Reset", () => command(id, "reset")));
    actions.appendChild(button("Code…", () => {
      const code = prompt("Second factor or login code for " + id);
      if (code) command(id, "second-factor", { code });
    }));
    actions.appendChild(button("Log out", () => { if (confirm("Log " + id + " out at the broker?")) command(id, "logout"); }));
    row.appendChild(actions);
  }

  function button(text, onClick) {
    const b = el("button", { type: "button" }, text);
    b.addEventListener("click", onClick);
    return b;
  }

  async function command(id, what, body) {
    const answer = await call("POST", "/v1/sessions/" + encodeURIComponent(id) + "/" + what, body);
    if (!answer.ok) alert(id + ": " + ((answer.json && answer.json.detail) || answer.status));
    refreshSoon(id);
  }

  function expiresIn(view) {
    if (!view.token || !view.token.expires_at_ms) return view.token ? "no expiry" : "—";
    return duration(view.token.expires_at_ms - now());
  }

  // The last 24 hours as coloured segments, one per state, from the state changes kept. Time before the
  // first known change stays blank (nothing is known of it).
  function drawTimeline(id, view) {
    const bar = el("div", { class: "timeline", "data-session": id });
    const end = now(), start = end - DAY_MS;
    const changes = page.timelines.get(id) || [];
    const before = changes.filter((c) => c.at < start);
    let state = before.length ? before[before.length - 1].state : null;
    let from = start;
    const spans = [];
    for (const change of changes.filter((c) => c.at >= start)) {
      if (state) spans.push({ from, to: change.at, state });
      from = change.at;
      state = change.state;
    }
    if (!state) from = Math.max(start, view.since_ms);
    spans.push({ from, to: end, state: view.state });
    for (const span of spans) {
      const left = ((span.from - start) / DAY_MS) * 100;
      const width = Math.max(((span.to - span.from) / DAY_MS) * 100, 0.25);
      const seg = el("span", { class: "seg", "data-state": span.state });
      seg.style.left = Math.min(left, 99.75).toFixed(3) + "%";
      seg.style.width = width.toFixed(3) + "%";
      seg.title = span.state + " from " + time(span.from) + " to " + time(span.to);
      bar.appendChild(seg);
    }
    return bar;
  }

  // ---- events -----------------------------------------------------------------------------------------
  function setConn(kind, text) {
    const conn = $("conn");
    conn.setAttribute("data-conn", kind);
    conn.textContent = text;
  }

  function openEvents() {
    if (page.source) page.source.close();
    const source = new EventSource("/v1/events");
    page.source = source;
    // Every (re)connection reloads the sessions: a change between the last load and the stream's start
    // (a login that a hand-in started while the page was still connecting) would otherwise never show.
    source.onopen = () => {
      setConn("live", "live");
      loadSessions();
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setConn("off", "disconnected");
        // The sign-in may have expired: ask, and show the sign-in form if so.
        call("GET", "/v1/whoami").then((a) => { if (a.status === 401) show("signin-panel"); });
      } else {
        setConn("retry", "reconnecting…");
      }
    };
    source.onmessage = (message) => {
      let event;
      try { event = JSON.parse(message.data); } catch (_) { return; }
      onEvent(event);
    };
  }

  function onEvent(event) {
    const list = $("events");
    const item = el("li", { "data-type": event.type, "data-id": event.id === null ? "" : event.id });
    item.appendChild(el("time", {}, event.at_ms ? time(event.at_ms) : time(now())));
    if (event.session) item.appendChild(el("b", {}, event.session));
    item.appendChild(document.createTextNode(event.text || event.type));
    list.insertBefore(item, list.firstChild);
    while (list.children.length > MAX_EVENTS_SHOWN) list.removeChild(list.lastChild);
    if (event.type === "gap" || event.type === "reload" || event.type === "events_lost") {
      loadSessions();
      return;
    }
    if (!event.session) return;
    if (event.type === "state_changed") {
      const changes = page.timelines.get(event.session) || [];
      changes.push({ at: event.at_ms, from: event.data.from, state: event.data.to });
      page.timelines.set(event.session, changes);
      const view = page.sessions.get(event.session);
      if (view) { view.state = event.data.to; renderRow(event.session); }
    }
    refreshSoon(event.session);
  }

  // ---- the clock --------------------------------------------------------------------------------------
  function tick() {
    $("clock").textContent = new Date(now()).toISOString().replace("T", " ").slice(0, 19) + " UTC";
    for (const cell of document.querySelectorAll("td.expiry[data-expires]")) {
      cell.textContent = duration(Number(cell.getAttribute("data-expires")) - now());
    }
  }

  function legend() {
    const box = $("legend");
    for (const state of STATES) {
      const item = el("span", {});
      const swatch = el("i", { class: "seg-swatch" });
      swatch.style.background = "var(--" + state + ")";
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(state));
      box.appendChild(item);
    }
  }

  async function start() {
    legend();
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("callback-confirm").addEventListener("click", handInCode);
    setInterval(tick, 1000);
    const me = await call("GET", "/v1/whoami");
    if (me.ok && me.json && me.json.via === "browser") {
      page.csrf = me.json.csrf;
      await afterSignIn();
    } else {
      show("signin-panel");
      $("token").focus();
    }
    tick();
  }

  start();
})();
