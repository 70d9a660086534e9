// @ts-check
/** AI configs: the user's own keys, models and options for each AI tool
 * (`/api/ai-configs`, PROTOCOL.md §6), which the start form offers. A key is write-only:
 * the page sends it once and from then on only knows whether one is set. */
import { html, useEffect, useState } from "./vendor/preact-htm.module.js";
import { api, describe } from "./api.js";

/** The tools a config is usually for; any other tool name may be typed. */
const TOOLS = ["claude", "qwen", "codex", "gemini"];
/** Permission modes the AI tools know (TOOLS.md); the gateway checks the form only. */
const MODES = ["default", "acceptEdits", "plan", "bypassPermissions"];

/** The request body of a form: empty fields are left out (on an update: left as they were).
 * @param {FormData} data */
function configOf(data) {
  const text = (/** @type {string} */ name) => String(data.get(name) || "").trim();
  /** @type {any} */
  const body = { name: text("name"), tool: text("tool") };
  if (text("model")) body.model = text("model");
  if (text("apiKey")) body.apiKey = text("apiKey");
  /** @type {any} */
  const settings = {};
  if (text("baseUrl")) settings.baseUrl = text("baseUrl");
  if (text("permissionMode")) settings.permissionMode = text("permissionMode");
  if (Object.keys(settings).length) body.settings = settings;
  return body;
}

export function AIConfigs() {
  const [configs, setConfigs] = useState(/** @type {any[] | null} */ (null));
  const [message, setMessage] = useState("");
  const [error, setError] = useState("");
  const load = async () => setConfigs((await api("GET", "/api/ai-configs")).aiConfigs);
  useEffect(() => {
    void load().catch((e) => setError(describe(e)));
  }, []);
  const run = async (/** @type {() => Promise<unknown>} */ action, /** @type {string} */ done) => {
    setMessage("");
    setError("");
    try {
      await action();
      setMessage(done);
      await load();
    } catch (e) {
      setError(describe(e));
    }
  };
  const create = (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    const form = /** @type {HTMLFormElement} */ (event.target);
    const body = configOf(new FormData(form));
    void run(async () => {
      await api("POST", "/api/ai-configs", body);
      form.reset();
    }, `${body.name} saved.`);
  };
  const replaceKey = (/** @type {any} */ config) => {
    const apiKey = prompt(`A new API key for ${config.name}`);
    if (apiKey) {
      void run(() => api("PATCH", `/api/ai-configs/${config.id}`, { apiKey }), `${config.name}: key replaced.`);
    }
  };
  const remove = (/** @type {any} */ config) => {
    if (confirm(`Delete ${config.name}? Workers started with it keep running.`)) {
      void run(() => api("DELETE", `/api/ai-configs/${config.id}`), `${config.name} deleted.`);
    }
  };
  return html`<section class="panel">
    <h2>AI configs</h2>
    <p class="note">A config gives an AI tool its key, model and options; pick one when you start a worker.
      Keys are kept encrypted and never shown again.</p>
    ${configs && !configs.length && html`<p>No AI config yet.</p>`}
    ${configs && configs.length > 0 && html`<table class="agent-list">
      <thead><tr><th>Name</th><th>Tool</th><th>Model</th><th>Key</th><th>Options</th><th></th></tr></thead>
      <tbody>${configs.map((c) => html`<tr>
        <td data-label="Name"><strong>${c.name}</strong></td>
        <td data-label="Tool">${c.tool}</td>
        <td data-label="Model">${c.model || "the tool's default"}</td>
        <td data-label="Key">${c.hasApiKey ? "set" : "none"}</td>
        <td data-label="Options">${[
          c.settings && c.settings.baseUrl ? `API at ${c.settings.baseUrl}` : "",
          c.settings && c.settings.permissionMode ? `mode ${c.settings.permissionMode}` : "",
        ].filter(Boolean).join(" · ")}</td>
        <td class="row-actions">
          <button class="quiet" onClick=${() => replaceKey(c)}>${c.hasApiKey ? "Replace" : "Add"} key of ${c.name}</button>
          <button class="danger" onClick=${() => remove(c)}>Delete ${c.name}</button>
        </td>
      </tr>`)}</tbody>
    </table>`}
    <h3>New AI config</h3>
    <form class="start" onSubmit=${create} aria-label="New AI config">
      <label>Name <input name="name" required maxlength="200" autocomplete="off" placeholder="Claude, work account" /></label>
      <label>Tool <input name="tool" required list="ai-tools" pattern="[a-z0-9][a-z0-9_.\\-]*" maxlength="64" autocomplete="off" /></label>
      <datalist id="ai-tools">${TOOLS.map((t) => html`<option value=${t} />`)}</datalist>
      <label>Model (optional) <input name="model" maxlength="200" autocomplete="off" /></label>
      <label>API key (optional) <input name="apiKey" type="password" autocomplete="off" /></label>
      <label>API base URL (optional) <input name="baseUrl" type="url" placeholder="https://" /></label>
      <label>Permission mode
        <select name="permissionMode">
          <option value="">the tool's default</option>
          ${MODES.map((m) => html`<option value=${m}>${m}</option>`)}
        </select>
      </label>
      <button type="submit">Save AI config</button>
    </form>
    ${message && html`<p role="status">${message}</p>`}
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </section>`;
}
