// @ts-check
/** One session: its events rendered by type, permission cards, the input box, stop. */
import { Component, html, useEffect, useRef, useState } from "./vendor/preact-htm.module.js";
import { describe } from "./api.js";
import { ansi, markdown, usageText } from "./render.js";

/** Entries are kept in blocks: a full block never changes, so it is never rendered again,
 * and the browser skips laying out the blocks out of view (`content-visibility`). */
const BLOCK = 200;
/** The most blocks kept on the page (10,000 entries); older ones stay in the history. */
const MAX_BLOCKS = 50;
const ENDED = new Set(["completed", "error", "cancelled", "lost"]);

/** @typedef {{key: string, kind: string, data: any}} Entry */

/** @param {{live: import("./live.js").Live, sessionId: string}} props */
export function SessionView({ live, sessionId }) {
  const blocks = useRef(/** @type {Entry[][]} */ ([[]]));
  const [dropped, setDropped] = useState(0);
  const tasks = useRef(/** @type {Map<string, string>} */ (new Map()));
  const permissions = useRef(/** @type {Map<string, any>} */ (new Map()));
  const [version, setVersion] = useState(0);
  const [title, setTitle] = useState("");
  const [error, setError] = useState("");
  const bottom = useRef(/** @type {HTMLElement | null} */ (null));

  useEffect(() => {
    let counter = 0;
    const add = (/** @type {Entry} */ entry) => {
      let last = blocks.current[blocks.current.length - 1];
      if (last.length >= BLOCK) {
        last = [];
        blocks.current = [...blocks.current, last];
        if (blocks.current.length > MAX_BLOCKS) {
          blocks.current = blocks.current.slice(1);
          setDropped((n) => n + BLOCK);
        }
      }
      last.push(entry);
    };
    const stop = live.watch(sessionId, (events) => {
      for (const { event, data } of events) {
        const key = data && data.eventId ? data.eventId : `${event}:${counter++}`;
        if (event === "session:joined") {
          const session = data.session;
          setTitle(session.title || (session.tasks[0] ? `${session.tasks[0].tool} session` : "session"));
          for (const task of session.tasks) tasks.current.set(task.id, task.status);
          for (const p of data.pendingPermissions) permissions.current.set(p.permissionId, p);
        } else if (event === "session:error") {
          setError(describe(data));
        } else if (event === "worker:status") {
          tasks.current.set(data.taskId, data.status);
          add({ key, kind: "status", data });
        } else if (event === "worker:permission") {
          permissions.current.set(data.permissionId, { ...data, status: "pending" });
        } else if (event === "worker:permission:resolved") {
          const known = permissions.current.get(data.permissionId);
          permissions.current.delete(data.permissionId);
          add({ key, kind: "resolved", data: { ...data, tool: known && known.tool } });
        } else if (event === "task:stream") {
          // Only what is shown is kept: a busy worker's lines are most of the page.
          add({ key, kind: "line", data: { type: data.type, data: data.data } });
        } else if (event === "worker:output") {
          add({ key, kind: `out-${data.type}`, data });
        } else if (event === "task:result") {
          add({ key, kind: "result", data });
        }
      }
      setVersion((v) => v + 1);
    });
    return stop;
  }, [sessionId]);

  useEffect(() => {
    if (bottom.current && typeof bottom.current.scrollIntoView === "function") {
      bottom.current.scrollIntoView({ block: "end" });
    }
  }, [version]);

  const running = [...tasks.current.entries()].filter(([, status]) => !ENDED.has(status));
  const taskId = running.length ? running[running.length - 1][0] : "";
  const act = async (/** @type {string} */ event, /** @type {any} */ payload) => {
    setError("");
    try {
      await live.call(event, payload);
    } catch (e) {
      setError(describe(e));
    }
  };
  const send = (/** @type {HTMLTextAreaElement} */ box) => {
    if (!taskId || !box.value) return;
    void act("worker:input", { taskId, input: box.value.endsWith("\n") ? box.value : `${box.value}\n` });
    box.value = "";
  };
  const onKey = (/** @type {KeyboardEvent} */ event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      send(/** @type {HTMLTextAreaElement} */ (event.target));
    }
  };
  return html`<section class="session" aria-label="Session">
    <h2>${title}</h2>
    <div class="log" role="log" aria-live="polite">
      ${dropped > 0 && html`<p class="event">${dropped.toLocaleString()} earlier entries are in the session's history.</p>`}
      ${blocks.current.map((entries) => html`<${Block} key=${entries[0] ? entries[0].key : "empty"} entries=${entries} size=${entries.length} />`)}
      <div ref=${bottom}></div>
    </div>
    ${[...permissions.current.values()].map((p) => html`<${PermissionCard} key=${p.permissionId} p=${p} act=${act} />`)}
    <form class="input" onSubmit=${(/** @type {SubmitEvent} */ e) => {
      e.preventDefault();
      send(/** @type {any} */ (e.target).elements.input);
    }}>
      <label class="sr-only" for="worker-input">Input to the worker</label>
      <textarea id="worker-input" name="input" rows="2" onKeyDown=${onKey} disabled=${!taskId}
        placeholder=${taskId ? "Type to the worker (Enter sends, Shift+Enter: a new line)" : "No worker running"}></textarea>
      <div class="actions">
        <button type="submit" disabled=${!taskId}>Send</button>
        <button type="button" disabled=${!taskId} onClick=${() => act("worker:stop", { taskId, mode: "interrupt" })}>Interrupt</button>
        <button type="button" class="danger" disabled=${!taskId} onClick=${() => act("worker:stop", { taskId, mode: "kill" })}>Kill</button>
      </div>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
  </section>`;
}

/** A run of entries, rendered again only when it grew. */
class Block extends Component {
  /** @param {{entries: Entry[], size: number}} next */
  shouldComponentUpdate(next) {
    return next.entries !== this.props.entries || next.size !== this.props.size;
  }

  render() {
    const entries = /** @type {Entry[]} */ (this.props.entries);
    return html`<div class="block">${entries.map((entry) => html`<${EntryView} key=${entry.key} entry=${entry} />`)}</div>`;
  }
}

/** @param {{entry: Entry}} props */
function EntryView({ entry }) {
  const { kind, data } = entry;
  if (kind === "line") return html`<pre class=${`line ${data.type}`}>${ansi(data.data)}</pre>`;
  if (kind === "status") {
    return html`<p class="event status-line">${data.status}${data.message ? `: ${data.message}` : ""}</p>`;
  }
  if (kind === "result") {
    const how = data.success ? "done" : `failed${data.error ? `: ${data.error}` : ""}`;
    return html`<p class=${`event result ${data.success ? "ok" : "bad"}`}>${how} in ${Math.round(data.duration || 0)} s</p>`;
  }
  if (kind === "resolved") {
    const by = data.reason === "answered" ? "" : ` (${data.reason})`;
    return html`<p class="event">${data.tool || "permission"}: ${data.decision}${by}</p>`;
  }
  if (kind === "out-assistant") return html`<div class="assistant">${markdown(data.content || "")}</div>`;
  if (kind === "out-user") return html`<div class="user-input"><pre>${data.content}</pre></div>`;
  if (kind === "out-thinking") {
    return html`<details class="thinking"><summary>Thinking</summary><pre>${data.content}</pre></details>`;
  }
  if (kind === "out-tool") {
    const details = data.details || {};
    return html`<details class="tool"><summary>${details.name || "tool"}</summary>
      <pre>${JSON.stringify(details.input, null, 2)}</pre></details>`;
  }
  if (kind === "out-tool-result") {
    const bad = data.details && data.details.isError;
    return html`<details class=${`tool-result ${bad ? "bad" : ""}`}><summary>${bad ? "tool failed" : "tool result"}</summary>
      <pre>${data.content}</pre></details>`;
  }
  if (kind === "out-result") {
    return html`<p class="event turn">turn done · ${usageText(data.usage)}</p>`;
  }
  return html`<p class="event system">${data.content || kind}</p>`;
}

/** @param {{p: any, act: (event: string, payload: any) => Promise<void>}} props */
function PermissionCard({ p, act }) {
  const answer = (/** @type {string} */ decision, /** @type {string} */ scope) =>
    act("worker:permission", { taskId: p.taskId, permissionId: p.permissionId, decision, scope });
  return html`<div class="permission" role="alertdialog" aria-label=${`Permission for ${p.tool}`}>
    <p><strong>${p.tool}</strong> asks: ${p.title || "may it run?"}</p>
    <pre>${JSON.stringify(p.input, null, 2)}</pre>
    <div class="actions">
      <button onClick=${() => answer("allow", "once")}>Allow</button>
      <button onClick=${() => answer("allow", "session")}>Allow ${p.tool} for this session</button>
      <button class="danger" onClick=${() => answer("deny", "once")}>Deny</button>
    </div>
  </div>`;
}
