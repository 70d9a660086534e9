// @ts-check
/** One session: its events rendered by type, permission cards, the input box, stop; and
 * its whole history, scrolled back over REST. `scrollback.js` keeps the window of entries
 * the page holds; this view keeps the scroll position: at the bottom it follows what
 * arrives; content added or dropped above what the user reads never moves it. Scrolled
 * near the top (or with the "Load earlier entries" button) the page before is read; near
 * the bottom of a window that no longer follows, the page after. */
import {
  Component, html, useEffect, useLayoutEffect, useRef, useState,
} from "./vendor/preact-htm.module.js";
import { api, describe } from "./api.js";
import { ansi, markdown, usageText } from "./render.js";
import { EntryWindow, PAGE, justAfter, toEntry } from "./scrollback.js";

const ENDED = new Set(["completed", "error", "cancelled", "lost"]);
/** Within this many pixels of the bottom, the view follows what arrives. */
const PINNED_PX = 48;
/** Scrolled this near an edge of the log, the page beyond it is read. */
const AHEAD_PX = 1500;
/** After a read failed, none is made on its own for this long. */
const RETRY_MS = 5000;

/** @typedef {import("./scrollback.js").Entry} Entry */
/** @typedef {{node: Element, offset: number}} Anchor */

/** @param {{live: import("./live.js").Live, sessionId: string}} props */
export function SessionView({ live, sessionId }) {
  const [win] = useState(() => new EntryWindow());
  const [tools] = useState(() => /** @type {Map<string, string>} */ (new Map()));
  const tasks = useRef(/** @type {Map<string, string>} */ (new Map()));
  const permissions = useRef(/** @type {Map<string, any>} */ (new Map()));
  const [version, setVersion] = useState(0);
  const [title, setTitle] = useState("");
  const [error, setError] = useState("");
  const [loading, setLoading] = useState("");
  const [atEnd, setAtEnd] = useState(true);
  const box = useRef(/** @type {HTMLElement | null} */ (null));
  const view = useRef({
    pinned: true, // the user is at the newest: what arrives scrolls into view
    toEnd: false, // scroll to the newest after the next render
    anchor: /** @type {Anchor | null} */ (null), // kept in place through the next render
    lastTop: 0,
    busy: 0, // the read under way (its generation), 0: none
    generation: 0,
    failedAt: 0, // when a read last failed
  });
  const bump = () => setVersion((v) => v + 1);

  useEffect(() => {
    const stop = live.watch(sessionId, (events) => {
      const pinned = view.current.pinned;
      for (const { event, data } of events) {
        if (event === "session:joined") {
          const session = data.session;
          setTitle(session.title || (session.tasks[0] ? `${session.tasks[0].tool} session` : "session"));
          for (const task of session.tasks) tasks.current.set(task.id, task.status);
          // What is pending now, read after the replay: prompts answered while this page
          // was away (and not replayed to it) are gone.
          permissions.current.clear();
          for (const p of data.pendingPermissions) permissions.current.set(p.permissionId, p);
        } else if (event === "session:history") {
          showNewest(data);
        } else if (event === "session:error") {
          setError(describe(data));
        } else if (event === "worker:status") {
          tasks.current.set(data.taskId, data.status);
        } else if (event === "worker:permission") {
          permissions.current.set(data.permissionId, { ...data, status: "pending" });
        } else if (event === "worker:permission:resolved") {
          permissions.current.delete(data.permissionId);
        }
        const id = data && data.eventId;
        if (id) win.live(id, toEntry(event, data, tools), pinned);
      }
      bump();
    }, { newest: true });
    return stop;
  }, [sessionId]);

  /** The newest page, after a resync (the page was away longer than the stream keeps):
   * a window at the newest starts again from it; one scrolled back keeps its place and
   * learns how far the newest now is.
   * @param {{events: any[], firstEventId: string, hasMore: boolean}} page */
  const showNewest = (page) => {
    const last = page.events[page.events.length - 1].data.eventId;
    const v = view.current;
    if (win.following && !win.pending) {
      win.reset(entriesOf(page.events), page.firstEventId, page.hasMore, last);
      win.liveLastId = last;
      v.pinned = true;
      v.toEnd = true;
    } else {
      // The read under way (if any) is stale: the next read starts from the newest.
      v.generation++;
      win.abandonCatchUp();
      win.following = false;
      win.liveLastId = last;
      win.missed += page.events.length;
    }
  };

  /** Remembers where the block at the top of the view is, before content changes above it. */
  const capture = () => {
    const v = view.current;
    const log = box.current;
    if (v.anchor || !log) return;
    const edge = log.getBoundingClientRect().top;
    for (const block of log.querySelectorAll(".block")) {
      const rect = block.getBoundingClientRect();
      if (rect.bottom > edge) {
        v.anchor = { node: block, offset: rect.top - edge };
        return;
      }
    }
  };

  /** One read of the history at a time; a newer one (`force`) takes over from it.
   * @param {string} what @param {(current: () => boolean) => Promise<void>} read
   * @param {boolean} [force] */
  const run = async (what, read, force = false) => {
    const v = view.current;
    if (v.busy && !force) return;
    const generation = ++v.generation;
    v.busy = generation;
    setLoading(what);
    try {
      await read(() => generation === v.generation);
    } catch (e) {
      if (generation === v.generation) {
        win.abandonCatchUp();
        v.failedAt = Date.now();
        setError(describe(e));
      }
    } finally {
      if (v.busy === generation) {
        v.busy = 0;
        setLoading("");
      }
      bump();
    }
  };
  const page = (/** @type {string} */ query) =>
    api("GET", `/api/sessions/${encodeURIComponent(sessionId)}/events?limit=${PAGE}&${query}`);
  const entriesOf = (/** @type {any[]} */ events) =>
    /** @type {Entry[]} */ (events.map((e) => toEntry(e.event, e.data, tools)).filter(Boolean));

  const loadEarlier = () => run("earlier", async (current) => {
    const cursor = win.headId;
    if (!cursor) return;
    const answer = await page(`before=${encodeURIComponent(cursor)}`);
    if (!current() || win.headId !== cursor) return;
    capture();
    win.prepend(entriesOf(answer.events), answer.firstEventId, answer.hasMore);
  });
  const loadNewer = () => run("newer", async (current) => {
    const cursor = win.tailId;
    if (!cursor) return;
    win.startCatchUp();
    const answer = await page(`after=${encodeURIComponent(cursor)}`);
    if (!current()) return;
    capture();
    win.append(entriesOf(answer.events));
    if (answer.events.length) win.tailId = answer.lastEventId;
    win.caughtUp(answer.events.length < PAGE);
  });
  const jump = () => {
    const v = view.current;
    if (win.following) {
      v.pinned = true;
      v.toEnd = true;
      bump();
      return;
    }
    void run("newest", async (current) => {
      const upto = win.liveLastId || win.tailId;
      if (!upto) return;
      win.startCatchUp();
      const answer = await page(`before=${encodeURIComponent(justAfter(upto))}`);
      if (!current()) return;
      win.reset(entriesOf(answer.events), answer.firstEventId, answer.hasMore, upto);
      win.caughtUp(true);
      v.pinned = true;
      v.toEnd = true;
    }, true);
  };
  /** Reads the page beyond an edge the user scrolled near: on each scroll and render. */
  const maybeLoad = () => {
    const v = view.current;
    const log = box.current;
    if (!log || v.busy || Date.now() - v.failedAt < RETRY_MS) return;
    if (log.scrollTop < AHEAD_PX && !win.atStart && win.headId) void loadEarlier();
    else if (log.scrollHeight - log.scrollTop - log.clientHeight < AHEAD_PX && !win.following) {
      void loadNewer();
    }
  };

  useLayoutEffect(() => {
    const v = view.current;
    const log = box.current;
    const anchor = v.anchor;
    v.anchor = null;
    if (!log) return;
    if (v.toEnd || (v.pinned && win.following)) {
      v.toEnd = false;
      log.scrollTop = log.scrollHeight;
    } else {
      if (anchor && anchor.node.isConnected) {
        const moved = anchor.node.getBoundingClientRect().top - log.getBoundingClientRect().top - anchor.offset;
        if (moved) log.scrollTop += moved;
      }
      // Content added below moves the newest away from a user who was there.
      v.pinned = log.scrollHeight - log.scrollTop - log.clientHeight < PINNED_PX;
      if (v.pinned !== atEnd) setAtEnd(v.pinned);
    }
    v.lastTop = log.scrollTop;
    maybeLoad();
  }, [version]);

  const onScroll = () => {
    const v = view.current;
    const log = box.current;
    if (!log) return;
    const near = log.scrollHeight - log.scrollTop - log.clientHeight < PINNED_PX;
    // Only the user scrolls up; content growing elsewhere may move it down a little.
    if (near) v.pinned = true;
    else if (log.scrollTop < v.lastTop - 1) v.pinned = false;
    v.lastTop = log.scrollTop;
    if (v.pinned !== atEnd) setAtEnd(v.pinned);
    maybeLoad();
  };

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
  const behind = !win.following;
  return html`<section class="session" aria-label="Session">
    <h2>${title}</h2>
    <div class="log-wrap">
      <div class="log" role="log" aria-live="polite" aria-busy=${loading ? "true" : "false"} ref=${box} onScroll=${onScroll}>
        <div class="log-edge">
          ${win.atStart
            ? html`<p class="event">Beginning of the session</p>`
            : win.headId && html`<button type="button" disabled=${loading === "earlier"} onClick=${() => void loadEarlier()}>
                ${loading === "earlier" ? "Loading earlier entries…" : "Load earlier entries"}</button>`}
        </div>
        ${win.blocks.map((entries) => html`<${Block} key=${entries[0].key} entries=${entries} size=${entries.length} />`)}
        <div class="log-edge">
          ${behind && html`<button type="button" disabled=${loading === "newer"} onClick=${() => void loadNewer()}>
            ${loading === "newer" ? "Loading newer entries…" : "Load newer entries"}</button>`}
        </div>
      </div>
      ${(behind || !atEnd) && html`<div class="jump">
        ${behind && html`<span>${win.missed ? `${win.missed.toLocaleString()} new ${win.missed === 1 ? "entry" : "entries"} below` : "Newer entries are not shown"}</span>`}
        <button type="button" onClick=${jump} disabled=${loading === "newest"}>Jump to newest</button>
      </div>`}
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
