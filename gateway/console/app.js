// @ts-check
/** The Orchestra console: sign in, agents, sessions, start workers, watch and drive them.
 * Routes are in the location's hash: `#/` sessions, `#/start`, `#/agents`, `#/s/<id>`.
 */
import { html, render, useEffect, useRef, useState } from "./vendor/preact-htm.module.js";
import { ApiError, api, current, describe, login, logout, onAuth } from "./api.js";
import { Admin } from "./admin.js";
import { Live } from "./live.js";
import { SessionView } from "./session.js";

function useHash() {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const changed = () => setHash(location.hash || "#/");
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function Login() {
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const submit = async (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    const form = new FormData(/** @type {HTMLFormElement} */ (event.target));
    setBusy(true);
    setError("");
    try {
      await login(String(form.get("username")), String(form.get("password")));
    } catch (e) {
      setError(e instanceof ApiError && e.status === 401 ? "Wrong username or password." : String(e));
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login">
    <h1>Orchestra</h1>
    <form onSubmit=${submit} aria-label="Sign in">
      <label>Username <input name="username" autocomplete="username" required /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required /></label>
      <button type="submit" disabled=${busy}>Sign in</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </form>
  </main>`;
}

/** @param {{live: Live, agents: any[], started: () => void}} props */
function StartForm({ live, agents, started }) {
  const [error, setError] = useState("");
  const [agentId, setAgentId] = useState("");
  const [tool, setTool] = useState("custom");
  const online = agents.filter((a) => a.status !== "offline");
  const chosen = online.find((a) => a.id === agentId);
  /** @type {string[]} */
  const tools = chosen
    ? chosen.tools.map((/** @type {any} */ t) => t.name)
    : [...new Set(online.flatMap((a) => a.tools.map((/** @type {any} */ t) => t.name)))];
  if (!tools.includes("custom")) tools.push("custom");
  const submit = async (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    const form = new FormData(/** @type {HTMLFormElement} */ (event.target));
    /** @type {any} */
    const request = { tool };
    if (agentId) request.agentId = agentId;
    const cwd = String(form.get("cwd") || "").trim();
    if (cwd) request.workingDirectory = cwd;
    const text = String(form.get("text") || "");
    if (tool === "custom") request.command = text;
    else if (text) request.initialPrompt = text;
    const mode = String(form.get("permissionMode") || "");
    if (mode && tool !== "custom") request.permissionMode = mode;
    setError("");
    try {
      const answer = await live.call("worker:start", request);
      started();
      location.hash = `#/s/${answer.sessionId}`;
    } catch (e) {
      setError(describe(e));
    }
  };
  return html`<section class="panel">
    <h2>Start a worker</h2>
    <form class="start" onSubmit=${submit}>
      <label>Agent
        <select name="agent" value=${agentId} onChange=${(/** @type {any} */ e) => setAgentId(e.target.value)}>
          <option value="">Any agent that fits</option>
          ${online.map((a) => html`<option value=${a.id}>${a.name} (${a.status})</option>`)}
        </select>
      </label>
      <label>Tool
        <select name="tool" value=${tool} onChange=${(/** @type {any} */ e) => setTool(e.target.value)}>
          ${tools.map((name) => html`<option value=${name}>${name}</option>`)}
        </select>
      </label>
      <label>Working directory <input name="cwd" placeholder="the agent's default" /></label>
      <label>${tool === "custom" ? "Command" : "Prompt"}
        <textarea name="text" rows="3" required=${tool === "custom"}></textarea>
      </label>
      ${tool !== "custom" && html`<label>Permissions
        <select name="permissionMode">
          <option value="">ask me (default)</option>
          <option value="acceptEdits">accept edits</option>
          <option value="plan">plan only</option>
          <option value="bypassPermissions">never ask</option>
        </select></label>`}
      <button type="submit">Start</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </form>
  </section>`;
}

/** @param {{agents: any[], reload: () => void}} props */
function Agents({ agents, reload }) {
  const [created, setCreated] = useState(/** @type {any} */ (null));
  const [error, setError] = useState("");
  const create = async (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    const form = /** @type {HTMLFormElement} */ (event.target);
    try {
      const name = String(new FormData(form).get("name"));
      setCreated({ name, ...(await api("POST", "/api/agents", { name })) });
      form.reset();
      reload();
    } catch (e) {
      setError(String(/** @type {any} */ (e).message));
    }
  };
  const rotate = async (/** @type {any} */ agent) => {
    if (!confirm(`Give ${agent.name} a new secret? It must restart with it.`)) return;
    try {
      setCreated({ name: agent.name, ...(await api("POST", `/api/agents/${agent.id}/rotate-secret`)) });
    } catch (e) {
      setError(String(/** @type {any} */ (e).message));
    }
  };
  const revoke = async (/** @type {any} */ agent) => {
    if (!confirm(`Revoke ${agent.name}? It can no longer connect.`)) return;
    await api("DELETE", `/api/agents/${agent.id}`).catch((e) => setError(String(e.message)));
    reload();
  };
  const command = created
    ? `printf '%s' '${created.agentSecret}' > ${created.name}.secret && chmod 600 ${created.name}.secret\n` +
      `orchestra agent --server ${location.origin} --agent-id ${created.agentId} --secret-file ${created.name}.secret`
    : "";
  return html`<section class="panel">
    <h2>Agents</h2>
    <table class="agents">
      <thead><tr><th>Name</th><th>Status</th><th>Load</th><th>Tools</th><th></th></tr></thead>
      <tbody>${agents.map((a) => html`<tr>
        <td>${a.name}</td>
        <td><span class=${`status ${a.status}`}>${a.status}</span></td>
        <td>${a.load ? `${a.load.running}/${a.load.max}` : ""}</td>
        <td>${a.tools.map((/** @type {any} */ t) => t.version ? `${t.name} ${t.version}` : t.name).join(", ")}</td>
        <td class="row-actions">
          <button class="quiet" onClick=${() => rotate(a)}>New secret</button>
          <button class="quiet" onClick=${() => revoke(a)}>Revoke</button>
        </td>
      </tr>`)}</tbody>
    </table>
    <form class="inline" onSubmit=${create}>
      <label>New agent <input name="name" required placeholder="laptop" /></label>
      <button type="submit">Create</button>
    </form>
    ${created && html`<div class="secret" role="status">
      <p>The secret of <strong>${created.name}</strong> is shown this once. On that machine, run:</p>
      <pre class="code">${command}</pre>
      <button onClick=${() => navigator.clipboard && navigator.clipboard.writeText(command)}>Copy</button>
    </div>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </section>`;
}

/** @param {{sessions: any[], waiting: Set<string>, active: string, admin: boolean}} props */
function SessionList({ sessions, waiting, active, admin }) {
  return html`<nav class="sessions" aria-label="Sessions">
    <a class="button" href="#/start">Start a worker</a>
    <a href="#/agents">Agents</a>
    ${admin && html`<a href="#/admin">Admin</a>`}
    <h2>Sessions</h2>
    <ul>${[...sessions].reverse().map((s) => html`<li>
      <a href=${`#/s/${s.id}`} aria-current=${s.id === active ? "page" : undefined}>
        ${s.title || (s.tasks && s.tasks[0] ? s.tasks[0].tool : "session")} · ${s.status}
        ${waiting.has(s.id) && html`<span class="badge" title="waiting for your answer">!</span>`}
      </a></li>`)}
    </ul>
  </nav>`;
}

function Console() {
  const hash = useHash();
  const [state, setState] = useState("connecting");
  const [agents, setAgents] = useState(/** @type {any[]} */ ([]));
  const [sessions, setSessions] = useState(/** @type {any[]} */ ([]));
  const [waiting, setWaiting] = useState(new Set());
  const liveRef = useRef(/** @type {Live | null} */ (null));
  if (!liveRef.current) liveRef.current = new Live(setState);
  const live = liveRef.current;
  const sync = async () => {
    const data = await live.call("user:sync");
    setAgents(data.agents);
    setSessions(data.sessions);
    setWaiting(new Set(data.pendingPermissions.map((/** @type {any} */ p) => p.sessionId)));
  };
  useEffect(() => {
    const offs = [
      live.on("connect", () => void sync().catch(() => {})),
      live.on("agents:updated", (data) => setAgents(data.agents)),
      live.on("session:updated", () => void sync().catch(() => {})),
    ];
    if (live.socket.connected) void sync();
    return () => {
      offs.forEach((off) => off());
      live.close();
    };
  }, []);
  const user = (current() || {}).user || {};
  const sessionId = hash.startsWith("#/s/") ? hash.slice(4) : "";
  let main;
  if (sessionId) main = html`<${SessionView} key=${sessionId} live=${live} sessionId=${sessionId} />`;
  else if (hash === "#/agents") main = html`<${Agents} agents=${agents} reload=${() => void sync()} />`;
  else if (hash === "#/admin" && user.isAdmin) main = html`<${Admin} />`;
  else main = html`<${StartForm} live=${live} agents=${agents} started=${() => void sync()} />`;
  return html`<div class="layout">
    <header>
      <a class="brand" href="#/">Orchestra</a>
      <span class=${`conn ${state}`} role="status" aria-live="polite">
        ${state === "online" ? "connected" : state === "reconnecting" ? "reconnecting…" : state}
      </span>
      <span class="who">${user.username || ""}</span>
      <button class="quiet" onClick=${() => void logout()}>Sign out</button>
    </header>
    <${SessionList} sessions=${sessions} waiting=${waiting} active=${sessionId} admin=${Boolean(user.isAdmin)} />
    <main>${main}</main>
  </div>`;
}

function App() {
  const [signedIn, setSignedIn] = useState(Boolean(current()));
  useEffect(() => onAuth((auth) => setSignedIn(Boolean(auth))), []);
  return signedIn ? html`<${Console} />` : html`<${Login} />`;
}

const root = /** @type {HTMLElement} */ (document.getElementById("root"));
root.textContent = ""; // the "Loading" line
render(html`<${App} />`, root);
