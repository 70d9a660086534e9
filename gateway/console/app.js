// @ts-check
/** The Orchestra console: sign in, agents, sessions, start workers, watch and drive them.
 * Routes are in the location's hash: `#/` sessions, `#/start`, `#/agents`, `#/ai-configs`,
 * `#/usage`, `#/s/<id>`.
 */
import { html, render, useEffect, useRef, useState } from "./vendor/preact-htm.module.js";
import { ApiError, api, current, describe, login, logout, onAuth } from "./api.js";
import { Admin } from "./admin.js";
import { AIConfigs } from "./ai.js";
import { Live } from "./live.js";
import { SessionView } from "./session.js";
import { Usage } from "./usage.js";
import { Notifications, disable as disableNotifications, notice, registerWorker } from "./notify.js";

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

/** Each string once, in the order first seen.
 * @param {string[]} items */
const unique = (items) => [...new Set(items)];

/** Where a worker may run: the chosen agent's recent working directories and allowed
 * roots (those of every online agent for "any agent"), as suggestions while typing and in
 * a list to pick from (a phone's own picker), so nobody has to type a path on a phone.
 * @param {{pool: any[], value: string, onChange: (dir: string) => void}} props */
function WorkdirField({ pool, value, onChange }) {
  const recent = unique(pool.flatMap((a) => (a.workdirs && a.workdirs.recent) || []));
  const roots = unique(pool.flatMap((a) => (a.workdirs && a.workdirs.roots) || []));
  const known = unique([...recent, ...roots]);
  /** @param {string} label @param {string[]} dirs */
  const group = (label, dirs) =>
    dirs.length > 0 && html`<optgroup label=${label}>${dirs.map((d) => html`<option value=${d}>${d}</option>`)}</optgroup>`;
  return html`<div class="workdir">
    <label>Working directory
      <input name="cwd" list="workdir-options" value=${value} autocomplete="off"
        placeholder="the agent's default" onInput=${(/** @type {any} */ e) => onChange(e.target.value)} />
    </label>
    <datalist id="workdir-options">${known.map((d) => html`<option value=${d} />`)}</datalist>
    ${known.length > 0 && html`<label for="workdir-pick">Recent directories and allowed roots</label>
      <select id="workdir-pick" value=${known.includes(value) ? value : ""}
        onChange=${(/** @type {any} */ e) => e.target.value && onChange(e.target.value)}>
        <option value="">${recent.length} recent, ${roots.length} allowed: pick one…</option>
        ${group("Recent directories", recent)}
        ${group("Allowed roots", roots)}
      </select>`}
  </div>`;
}

/** @param {{live: Live, agents: any[], started: () => void}} props */
function StartForm({ live, agents, started }) {
  const [error, setError] = useState("");
  const [agentId, setAgentId] = useState("");
  const [tool, setTool] = useState("custom");
  const [cwd, setCwd] = useState("");
  const [configId, setConfigId] = useState("");
  const [configs, setConfigs] = useState(/** @type {any[]} */ ([]));
  useEffect(() => {
    api("GET", "/api/ai-configs").then((d) => setConfigs(d.aiConfigs || []), () => setConfigs([]));
  }, []);
  const online = agents.filter((a) => a.status !== "offline");
  const chosen = online.find((a) => a.id === agentId);
  /** @type {string[]} */
  const tools = chosen
    ? chosen.tools.map((/** @type {any} */ t) => t.name)
    : [...new Set(online.flatMap((a) => a.tools.map((/** @type {any} */ t) => t.name)))];
  if (!tools.includes("custom")) tools.push("custom");
  const fitting = configs.filter((c) => !c.tool || c.tool === tool);
  const config = tool === "custom" ? undefined : fitting.find((c) => c.id === configId);
  const submit = async (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    const form = new FormData(/** @type {HTMLFormElement} */ (event.target));
    /** @type {any} */
    const request = { tool };
    if (agentId) request.agentId = agentId;
    if (cwd.trim()) request.workingDirectory = cwd.trim();
    const text = String(form.get("text") || "");
    if (tool === "custom") request.command = text;
    else if (text) request.initialPrompt = text;
    const mode = String(form.get("permissionMode") || "");
    if (mode && tool !== "custom") request.permissionMode = mode;
    if (config) request.aiConfigId = config.id;
    const model = String(form.get("model") || "").trim();
    if (model && tool !== "custom") request.model = model;
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
      <${WorkdirField} pool=${chosen ? [chosen] : online} value=${cwd} onChange=${setCwd} />
      ${tool !== "custom" && html`<div class="row">
        <div>
          <label for="ai-config">AI config</label>
          <select id="ai-config" name="aiConfig" value=${config ? config.id : ""}
            onChange=${(/** @type {any} */ e) => setConfigId(e.target.value)}>
            <option value="">none: the tool's own login</option>
            ${fitting.map((c) => html`<option value=${c.id}>${c.name}${c.model ? ` (${c.model})` : ""}</option>`)}
          </select>
          <a class="note" href="#/ai-configs">Add or change AI configs</a>
        </div>
        <label>Model
          <input name="model" autocomplete="off"
            placeholder=${config && config.model ? config.model : "the tool's default"} />
        </label>
      </div>`}
      <label>${tool === "custom" ? "Command" : "Prompt"}
        <textarea name="text" rows="3" required=${tool === "custom"}></textarea>
      </label>
      ${tool !== "custom" && html`<label>Permissions
        <select name="permissionMode">
          <option value="">${config && config.settings && config.settings.permissionMode
            ? `the AI config's (${config.settings.permissionMode})` : "ask me (default)"}</option>
          <option value="acceptEdits">accept edits</option>
          <option value="plan">plan only</option>
          <option value="bypassPermissions">never ask</option>
        </select></label>`}
      <button type="submit">Start</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </form>
  </section>`;
}

/** An agent's round trip in ms, as people read it. @param {number | null | undefined} ms */
const latency = (ms) => (ms == null ? "not measured" : `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`);

/** @param {any} info */
const systemInfo = (info) =>
  info ? `CPU ${Math.round(info.cpu)}% · memory ${Math.round(info.memory)}% · disk ${Math.round(info.disk)}%` : "no report yet";

/** @param {{agents: any[], reload: () => void, refresh?: () => Promise<void>}} props */
function Agents({ agents, reload, refresh }) {
  const [created, setCreated] = useState(/** @type {any} */ (null));
  const [error, setError] = useState("");
  useEffect(() => {
    if (!refresh) return;
    // Latency and system info change with every heartbeat: fresh figures while shown.
    const timer = setInterval(() => void refresh().catch(() => {}), 5_000);
    return () => clearInterval(timer);
  }, []);
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
    <table class="agent-list">
      <thead><tr><th>Agent</th><th>Status</th><th>Load</th><th>Latency</th><th>System</th><th>Tools</th><th></th></tr></thead>
      <tbody>${agents.map((a) => html`<tr>
        <td data-label="Agent"><span><strong>${a.name}</strong>${a.agentVersion &&
          html`<span class="muted"> · v${a.agentVersion}</span>`}</span></td>
        <td data-label="Status"><span class=${`status ${a.status}`}>${a.status}</span></td>
        <td data-label="Load">${a.load ? `${a.load.running}/${a.load.max} running` : ""}</td>
        <td data-label="Latency">${latency(a.latency)}</td>
        <td data-label="System">${systemInfo(a.systemInfo)}</td>
        <td data-label="Tools">${a.tools.map((/** @type {any} */ t) => t.version ? `${t.name} ${t.version}` : t.name).join(", ")}</td>
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
    <a href="#/ai-configs">AI configs</a>
    <a href="#/usage">Usage</a>
    <a href="#/notifications">Notifications</a>
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
      live.onNews((sessionId, item) => void notice(sessionId, item.event, item.data).catch(() => {})),
    ];
    void registerWorker();
    if (live.socket.connected) void sync();
    return () => {
      offs.forEach((off) => off());
      live.close();
    };
  }, []);
  const user = (current() || {}).user || {};
  // `#/sessions/<id>` is the form links in notifications take.
  const sessionId = hash.match(/^#\/(?:s|sessions)\/([^/?]+)/)?.[1] ?? "";
  let main;
  if (sessionId) main = html`<${SessionView} key=${sessionId} live=${live} sessionId=${sessionId} />`;
  else if (hash === "#/agents") {
    const refresh = async () => setAgents((await live.call("agents:list")).agents);
    main = html`<${Agents} agents=${agents} reload=${() => void sync()} refresh=${refresh} />`;
  } else if (hash === "#/ai-configs") main = html`<${AIConfigs} />`;
  else if (hash === "#/usage") main = html`<${Usage} admin=${Boolean(user.isAdmin)} />`;
  else if (hash === "#/admin" && user.isAdmin) main = html`<${Admin} />`;
  else if (hash === "#/notifications") main = html`<${Notifications} />`;
  else main = html`<${StartForm} live=${live} agents=${agents} started=${() => void sync()} />`;
  return html`<div class="layout">
    <header>
      <a class="brand" href="#/">Orchestra</a>
      <span class=${`conn ${state}`} role="status" aria-live="polite">
        ${state === "online" ? "connected" : state === "reconnecting" ? "reconnecting…" : state}
      </span>
      <span class="who">${user.username || ""}</span>
      <button class="quiet" onClick=${() => void disableNotifications().finally(logout)}>Sign out</button>
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
