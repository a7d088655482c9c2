// The operator's console: sign in with the operator token, then poll the operator API once a second for
// the view on screen. A poll, not server-sent events: EventSource cannot send an Authorization header,
// and a token in the URL would land in logs and history; one small JSON request a second per open tab
// is cheap. Every action goes through the endpoints `tessera admin` uses. Text from peers goes through
// show.js into textContent, never into HTML.
import { drawChart, short } from "./chart.js";
import { escapeUnsafe, showName } from "./show.js";

const KEY = "tessera.operatorToken";
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

let token = sessionStorage.getItem(KEY) ?? "";
let view = "sessions";
let timer;
/** Bumped by every refresh, so a poll started before it does not schedule a second loop. */
let generation = 0;
let refusals = 0;

/** Refused by the operator gate (401, 403, 429): the page signs out and says why. */
class Refused extends Error {}

/** The rule `tessera admin` follows: the token goes over HTTPS, or over plain HTTP only to this machine. */
function safeTransport(loc) {
  if (loc.protocol === "https:") return true;
  const host = loc.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "localhost" || host.endsWith(".localhost")) return true;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(host)) return host.startsWith("127.");
  return host === "::1" || host === "::ffff:127.0.0.1";
}

async function api(path, body) {
  const headers = { authorization: `Bearer ${token}` };
  if (body) headers["content-type"] = "application/json";
  const res = await fetch(path, {
    method: body ? "POST" : "GET",
    headers,
    cache: "no-store",
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (res.status === 401 || res.status === 403 || res.status === 429) throw new Refused(text.trim());
  if (!res.ok) throw new Error(`${res.status}: ${text.trim()}`);
  return JSON.parse(text);
}

function fail(err) {
  if (err instanceof Refused) return signOut(err.message);
  $("error").textContent = `Error: ${err.message}`;
}

// ---- sign-in ----

async function signIn(candidate) {
  token = candidate;
  try {
    await api("/admin/sessions");
  } catch (err) {
    token = "";
    refusals++;
    $("signin-error").textContent =
      err instanceof Refused ? `Refused (attempt ${refusals}): ${err.message}` : `Could not sign in: ${err.message}`;
    return;
  }
  sessionStorage.setItem(KEY, token);
  $("token").value = "";
  $("signin-error").textContent = "";
  $("signin").hidden = true;
  $("tabs").hidden = false;
  $("signout").hidden = false;
  show(view);
}

function signOut(why) {
  clearTimeout(timer);
  timer = undefined;
  token = "";
  sessionStorage.removeItem(KEY);
  for (const s of document.querySelectorAll(".view")) s.hidden = true;
  $("tabs").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("live").textContent = "";
  $("error").textContent = "";
  $("enrol-result").hidden = true;
  $("enrol-token").textContent = "";
  $("signin-error").textContent = why ?? "";
}

// ---- views and the poll ----

function show(name) {
  // A token made on the hosts view is shown once: leaving the view forgets it.
  if (view === "hosts" && name !== "hosts") {
    $("enrol-result").hidden = true;
    $("enrol-token").textContent = "";
  }
  view = name;
  for (const b of document.querySelectorAll("#tabs button"))
    b.setAttribute("aria-selected", String(b.dataset.view === name));
  for (const s of document.querySelectorAll(".view")) s.hidden = s.id !== `view-${name}`;
  refresh();
}

/** Polls now, and from now on once a second after each answer (one poll loop at a time). */
function refresh() {
  clearTimeout(timer);
  void tick(++generation);
}

async function tick(g) {
  if (!token || g !== generation) return;
  try {
    await RENDER[view]();
    $("error").textContent = "";
    $("live").textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    fail(err);
  }
  if (token && g === generation) timer = setTimeout(() => tick(g), POLL_MS);
}

/** Keeps one row a key: rows update in place (a button under the pointer stays put), gone ones go. */
function syncRows(tbody, items, key, cells) {
  const seen = new Set();
  const rows = new Map([...tbody.rows].map((r) => [r.dataset.key, r]));
  for (const item of items) {
    const k = key(item);
    seen.add(k);
    let tr = rows.get(k);
    if (!tr) {
      tr = tbody.insertRow();
      tr.dataset.key = k;
    }
    const values = cells(item);
    while (tr.cells.length < values.length) tr.insertCell();
    values.forEach((v, i) => {
      const td = tr.cells[i];
      if (v instanceof Node) {
        if (td.firstChild !== v) td.replaceChildren(v);
      } else {
        const cell = typeof v === "object" && v !== null ? v : { text: v };
        if (td.textContent !== cell.text) td.textContent = cell.text;
        td.className = cell.cls ?? "";
        if (cell.title) td.title = cell.title;
      }
    });
  }
  for (const tr of [...tbody.rows]) if (!seen.has(tr.dataset.key)) tr.remove();
  return seen;
}

/** One button a row, made once and kept (so a click lands on the row it was meant for). */
const buttons = new Map();
function pruneButtons(prefix, live) {
  for (const id of buttons.keys()) if (id.startsWith(prefix) && !live.has(id.slice(prefix.length))) buttons.delete(id);
}
function rowButton(id, label, onClick) {
  let b = buttons.get(id);
  if (!b) {
    b = document.createElement("button");
    b.type = "button";
    b.className = "danger";
    b.textContent = label;
    b.addEventListener("click", onClick);
    buttons.set(id, b);
  }
  return b;
}

/** A host's full key fingerprint with a Copy button, made once a host (kept like the row's buttons). */
function fingerprint(key) {
  let cell = buttons.get(`key:${key}`);
  if (!cell) {
    cell = document.createElement("span");
    const code = document.createElement("code");
    code.textContent = key;
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.addEventListener("click", () => {
      void navigator.clipboard?.writeText(key).then(() => {
        copy.textContent = "Copied";
      });
    });
    cell.append(code, " ", copy);
    buttons.set(`key:${key}`, cell);
  }
  return cell;
}

function confirmThen(question, action) {
  const d = $("confirm");
  $("confirm-text").textContent = question;
  d.returnValue = "";
  d.addEventListener(
    "close",
    () => {
      if (d.returnValue === "yes") action().then(refresh, fail);
    },
    { once: true },
  );
  d.showModal();
}

const n = (x) => x.toLocaleString("en-US");
function clock(sec) {
  const s = Math.max(0, Math.floor(sec));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(h ? 2 : 1, "0");
  return `${h ? `${h}:` : ""}${mm}:${String(s % 60).padStart(2, "0")}`;
}
const name = (s) => ({ text: showName(s), cls: "untrusted" });

const RENDER = {
  async sessions() {
    const { sessions } = await api("/admin/sessions");
    $("count-sessions").textContent = `(${sessions.length})`;
    $("sessions-empty").hidden = sessions.length > 0;
    const live = syncRows(
      $("sessions").tBodies[0],
      sessions,
      (s) => s.id,
      (s) => {
        const scope = [s.scope.granted || "until ended"];
        if (s.scope.timeLeftSec !== undefined) scope.push(`${clock(s.scope.timeLeftSec)} left`);
        if (s.scope.streamsLeft !== undefined) scope.push(`${s.scope.streamsLeft} connection(s) left`);
        const elsewhere = s.state === "on another node";
        return [
          { text: s.id, cls: "mono id" },
          { ...name(s.host), title: s.hostKey },
          { ...name(s.guest), title: s.guestKey },
          escapeUnsafe(s.guestAddr),
          escapeUnsafe(s.target),
          scope.join(", "),
          elsewhere ? s.state : s.state === "live" ? s.path : `${s.path} (${s.state})`,
          { text: `${elsewhere ? "–" : s.streams.live} / ${s.streams.total}`, cls: "num" },
          { text: n(s.bytesUp), cls: "num" },
          { text: n(s.bytesDown), cls: "num" },
          // Another node's session: its idle clock is that node's to keep.
          elsewhere ? "–" : clock(s.scope.idleLimitSec - s.idleSec),
          rowButton(`revoke:${s.id}`, "Revoke", () =>
            confirmThen(
              `Revoke session ${s.id}: guest ${showName(s.guest)} on ${showName(s.host)} (${escapeUnsafe(s.target)})? Its connections end at once and the guest is told the operator revoked it.`,
              () => api(`/s/${encodeURIComponent(s.id)}/revoke`, {}),
            ),
          ),
        ];
      },
    );
    pruneButtons("revoke:", live);
  },

  async hosts() {
    const { hosts } = await api("/admin/hosts");
    $("hosts-empty").hidden = hosts.length > 0;
    const live = syncRows(
      $("hosts").tBodies[0],
      hosts,
      (h) => h.key,
      (h) => [
        name(h.name),
        fingerprint(h.key),
        h.connections > 0 ? "now (connected)" : h.lastSeen ? new Date(h.lastSeen).toLocaleString() : "never",
        h.shares.length
          ? h.shares
              .map(
                (s) =>
                  `${escapeUnsafe(s.id)} → ${s.targets.map(escapeUnsafe).join(", ")} (${s.online ? "online" : "agent away"}, ${s.sessions} session${s.sessions === 1 ? "" : "s"})`,
              )
              .join("; ")
          : "none",
        rowButton(`remove:${h.key}`, "Remove", () =>
          confirmThen(
            `Remove host ${showName(h.name)} (${h.key})? Its certificate is refused from now on, its shares and sessions end at once, and it can come back only with a new enrolment token.`,
            () => api("/admin/hosts/remove", { host: h.key, operator: "console" }),
          ),
        ),
      ],
    );
    pruneButtons("remove:", live);
    pruneButtons("key:", live);
  },

  async audit() {
    const q = new URLSearchParams({ n: $("f-n").value || "100" });
    for (const k of ["session", "host", "guest"]) {
      const v = $(`f-${k}`).value.trim();
      if (v) q.set(k, v);
    }
    const { chain, lines } = await api(`/admin/audit?${q}`);
    const c = $("chain");
    c.textContent = `Audit chain: ${chain.summary} (checked ${new Date(chain.checkedAt).toLocaleTimeString()})`;
    c.className = `chain ${chain.ok ? "ok" : "bad"}`;
    const skip = new Set(["seq", "ts", "event", "prev", "sessionId", "host", "guest"]);
    syncRows(
      $("audit").tBodies[0],
      lines,
      (l) => String(l.seq),
      (l) => [
        { text: String(l.seq), cls: "num" },
        String(l.ts),
        escapeUnsafe(String(l.event)),
        l.sessionId === undefined ? "" : escapeUnsafe(String(l.sessionId)),
        // The log already wrote peers' words escaped (audit/log.ts): shown as written, escaped again in case.
        l.host === undefined ? "" : { text: escapeUnsafe(String(l.host)), cls: "untrusted" },
        l.guest === undefined ? "" : { text: escapeUnsafe(String(l.guest)), cls: "untrusted" },
        {
          text: Object.entries(l)
            .filter(([k]) => !skip.has(k))
            .map(([k, v]) => `${k}=${escapeUnsafe(typeof v === "string" ? v : JSON.stringify(v)).slice(0, 80)}`)
            .join(" "),
          cls: "mono",
        },
      ],
    );
    // Newest first on screen, as an operator reads a log.
    const body = $("audit").tBodies[0];
    const rows = [...body.rows].sort((a, b) => Number(b.dataset.key) - Number(a.dataset.key));
    if (rows.some((r, i) => body.rows[i] !== r)) body.append(...rows);
  },

  async chart() {
    const { everySec, points } = await api("/admin/chart");
    const now = points.length ? Date.parse(points.at(-1).t) : Date.now();
    $("chart-note").textContent =
      `The /metrics counters sampled every ${everySec}s since this coordinator started (at most the last hour), as rates between samples.`;
    $("charts").replaceChildren(
      drawChart("Active sessions", points, [{ key: "sessions", label: "sessions" }], now),
      drawChart("Streams opened per second", points, [{ key: "streamsPerSec", label: "streams/s" }], now),
      drawChart(
        "Bytes per second",
        points,
        [
          { key: "relayedBytesPerSec", label: "relayed" },
          { key: "directBytesPerSec", label: "direct" },
        ],
        now,
      ),
      drawChart("Refusals per second", points, [{ key: "refusalsPerSec", label: "refusals/s" }], now),
    );
    $("charts").dataset.points = String(points.length);
    $("charts").title = `peak ${short(Math.max(0, ...points.map((p) => p.relayedBytesPerSec)))} B/s relayed`;
  },
};

// ---- wiring ----

function start() {
  if (!safeTransport(location)) {
    $("signin-error").textContent =
      `This page came over plain HTTP from ${location.host}: the operator token would cross the network in the clear, so it is not sent. Serve the console over HTTPS (coordinator --http-cert/--http-key) or reach it through an ssh tunnel to 127.0.0.1.`;
    $("token").disabled = true;
    $("signin-button").disabled = true;
    return;
  }
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    void signIn($("token").value.trim());
  });
  $("signout").addEventListener("click", () => signOut("Signed out."));
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.view));
  $("audit-filter").addEventListener("submit", (e) => e.preventDefault());
  $("audit-filter").addEventListener("input", () => {
    $("audit").tBodies[0].replaceChildren();
    refresh();
  });
  $("enrol-form").addEventListener("submit", (e) => {
    e.preventDefault();
    api("/admin/enroll-tokens", { ttlSec: Number($("enrol-ttl").value), operator: "console" }).then((t) => {
      $("enrol-token").textContent = t.token;
      $("enrol-expires").textContent = `Token ${t.id}, valid until ${new Date(t.expiresAt).toLocaleString()}.`;
      $("enrol-result").hidden = false;
    }, fail);
  });
  $("enrol-copy").addEventListener("click", () => {
    void navigator.clipboard?.writeText($("enrol-token").textContent ?? "");
  });
  if (token) void signIn(token);
}

start();
