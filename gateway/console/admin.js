// @ts-check
/** What admins see: users (create, disable, reset a password), this node's health and
 * the agents' (`/health/agents`). */
import { html, useEffect, useState } from "./vendor/preact-htm.module.js";
import { api } from "./api.js";

export function Admin() {
  const [users, setUsers] = useState(/** @type {any[]} */ ([]));
  const [health, setHealth] = useState(/** @type {any} */ (null));
  const [agents, setAgents] = useState(/** @type {any} */ (null));
  const [message, setMessage] = useState("");
  const load = async () => {
    setUsers((await api("GET", "/api/users")).users);
    const response = await fetch("/health");
    setHealth(await response.json());
    setAgents(await api("GET", "/health/agents"));
  };
  useEffect(() => {
    void load().catch((e) => setMessage(String(e.message)));
  }, []);
  const run = async (/** @type {() => Promise<unknown>} */ action, /** @type {string} */ done) => {
    setMessage("");
    try {
      await action();
      setMessage(done);
      await load();
    } catch (e) {
      setMessage(String(/** @type {any} */ (e).message));
    }
  };
  const create = (/** @type {SubmitEvent} */ event) => {
    event.preventDefault();
    const form = /** @type {HTMLFormElement} */ (event.target);
    const data = new FormData(form);
    const body = {
      username: String(data.get("username")),
      password: String(data.get("password")),
      isAdmin: data.get("isAdmin") === "on",
    };
    void run(async () => {
      await api("POST", "/api/users", body);
      form.reset();
    }, `${body.username} created.`);
  };
  const toggle = (/** @type {any} */ user) =>
    run(
      () => api("PATCH", `/api/users/${user.id}`, { disabled: !user.disabled }),
      `${user.username} ${user.disabled ? "enabled" : "disabled"}.`,
    );
  const reset = (/** @type {any} */ user) => {
    const password = prompt(`A new password for ${user.username}`);
    if (password) {
      void run(() => api("POST", `/api/users/${user.id}/password`, { password }), `${user.username}'s password reset.`);
    }
  };
  return html`<section class="panel">
    <h2>Users</h2>
    <table class="agents">
      <thead><tr><th>User</th><th>Role</th><th>State</th><th></th></tr></thead>
      <tbody>${users.map((u) => html`<tr>
        <td>${u.username}</td>
        <td>${u.isAdmin ? "admin" : "user"}</td>
        <td>${u.disabled ? "disabled" : "active"}</td>
        <td class="row-actions">
          <button class="quiet" onClick=${() => toggle(u)}>${u.disabled ? "Enable" : "Disable"} ${u.username}</button>
          <button class="quiet" onClick=${() => reset(u)}>Reset password</button>
        </td>
      </tr>`)}</tbody>
    </table>
    <form class="inline" onSubmit=${create} aria-label="New user">
      <label>Username <input name="username" required autocomplete="off" /></label>
      <label>Password <input name="password" type="password" required autocomplete="new-password" /></label>
      <label class="check"><input name="isAdmin" type="checkbox" /> admin</label>
      <button type="submit">Create user</button>
    </form>
    ${message && html`<p role="status">${message}</p>`}
    <h2>This gateway</h2>
    ${health && html`<dl class="health">
      <dt>Status</dt><dd class=${health.status}>${health.status}${(health.reasons || []).length ? `: ${health.reasons.join("; ")}` : ""}</dd>
      <dt>Node</dt><dd>${health.node}${health.leader ? " (leader)" : ""}</dd>
      <dt>Partitions held</dt><dd>${(health.partitions || []).length}</dd>
      ${Object.entries(health.checks || {}).map(
        ([name, check]) => html`<dt>${name}</dt><dd>${/** @type {any} */ (check).status}</dd>`,
      )}
    </dl>`}
    <h2>Agents</h2>
    ${agents && html`<p role="status" class="note">${agents.healthyAgents} of ${agents.totalAgents} healthy</p>
      <ul class="agent-health">
        ${agents.agents.map(
          (/** @type {any} */ a) => html`<li>
            <span class=${a.healthy ? "healthy" : "unhealthy"}>${a.healthy ? "healthy" : "unhealthy"}</span>
            <strong>${a.name}</strong> ${a.status}${a.latency != null ? ` · ${Math.round(a.latency)} ms` : ""}
          </li>`,
        )}
      </ul>`}
  </section>`;
}
