// @ts-check
/** The `/web` socket (PROTOCOL.md §3, §4): requests with acks, reconnection, and the
 * sessions this page watches, resumed from their last eventId after every reconnect.
 *
 * Each watched session joins with `batch: true` and gets `session:events` frames; the
 * page keeps the last eventId it handled, so a replay after a reconnect adds nothing
 * twice (events at or before it are skipped). A `session:resync` (the stream no longer
 * holds what we missed) loads the history over REST from there, then joins again; a
 * watcher that shows only the newest (`{newest: true}`) gets the newest page instead, as
 * one `session:history` event, however long the page was away.
 */
import { io } from "./vendor/socket.io.esm.min.js";
import { api, current, refresh } from "./api.js";

/** @typedef {{event: string, data: any}} SessionEvent */
/** @typedef {(events: SessionEvent[]) => void} Handler */
/** @typedef {{handler: Handler, lastEventId: string | null, epoch: string | null, joined: boolean, newest: boolean}} Watch */

/** Past any eventId Redis will make (milliseconds in the year 287,396): `before` it is the
 * newest page. */
const NEWEST = "9007199254740991-0";
/** Events in the newest page a `{newest: true}` watcher gets on a resync. */
const NEWEST_PAGE = 500;

/** @param {string} id */
export function eventKey(id) {
  const [ms, seq] = id.split("-");
  return [Number(ms), Number(seq || 0)];
}

/** @param {string} a @param {string} b */
export function after(a, b) {
  const [am, as] = eventKey(a);
  const [bm, bs] = eventKey(b);
  return am > bm || (am === bm && as > bs);
}

export class Live {
  /** @param {(state: string) => void} onState */
  constructor(onState) {
    this.onState = onState;
    /** @type {Map<string, Watch>} */
    this.watched = new Map();
    /** Told of each event that is news to the page (not the history a first join replays).
     * @type {Set<(sessionId: string, item: SessionEvent) => void>} */
    this.newsListeners = new Set();
    this.socket = io("/web", {
      transports: ["websocket"],
      auth: (cb) => cb({ token: (current() || {}).accessToken }),
      reconnectionDelay: 500,
      reconnectionDelayMax: 10_000,
    });
    this.socket.on("connect", () => {
      this.onState("online");
      for (const sessionId of this.watched.keys()) void this._join(sessionId);
    });
    this.socket.on("disconnect", (reason) => {
      this.onState(reason === "io client disconnect" ? "offline" : "reconnecting");
    });
    this.socket.on("connect_error", async (error) => {
      this.onState("reconnecting");
      const data = /** @type {any} */ (error).data;
      if (data && data.code === "AUTH_001") {
        // An expired access token: a fresh one, then the next attempt uses it.
        if (!(await refresh().catch(() => null))) this.close();
      }
    });
    this.socket.on("session:events", (/** @type {any} */ frame) => {
      this._deliver(frame.sessionId, frame.events);
    });
    this.socket.on("session:resync", (/** @type {any} */ data) => void this._resync(data.sessionId));
  }

  close() {
    this.socket.disconnect();
  }

  /** A request; resolves with the ack's data, rejects with its ErrorInfo.
   * @param {string} event @param {any} payload */
  async call(event, payload = {}) {
    const answer = await this.socket.timeout(30_000).emitWithAck(event, payload);
    if (!answer.success) throw Object.assign(new Error(answer.error.message), answer.error);
    return answer.data;
  }

  /** @param {string} event @param {(data: any) => void} fn */
  on(event, fn) {
    this.socket.on(event, fn);
    return () => this.socket.off(event, fn);
  }

  /** Watch a session: `handler` gets its events, replayed then live, each once, in order.
   * With `newest`, a resync skips what was missed: the handler gets `session:history`
   * `{events, firstEventId, hasMore}`, the newest page, and the events after it follow.
   * @param {string} sessionId @param {Handler} handler @param {{newest?: boolean}} [options] */
  watch(sessionId, handler, options = {}) {
    const newest = Boolean(options.newest);
    this.watched.set(sessionId, { handler, lastEventId: null, epoch: null, joined: false, newest });
    if (this.socket.connected) void this._join(sessionId);
    return () => {
      this.watched.delete(sessionId);
      if (this.socket.connected) void this.call("session:leave", { sessionId }).catch(() => {});
    };
  }

  /** @param {string} sessionId */
  async _join(sessionId) {
    const watch = this.watched.get(sessionId);
    if (!watch) return;
    /** @type {any} */
    const request = { sessionId, batch: true };
    if (watch.lastEventId) {
      request.lastEventId = watch.lastEventId;
      if (watch.epoch) request.epoch = watch.epoch;
    }
    try {
      const joined = await this.call("session:join", request);
      watch.epoch = joined.epoch;
      watch.joined = true;
      watch.handler([{ event: "session:joined", data: joined }]);
    } catch (error) {
      watch.handler([{ event: "session:error", data: error }]);
    }
  }

  /** @param {string} sessionId @param {SessionEvent[]} events */
  _deliver(sessionId, events) {
    const watch = this.watched.get(sessionId);
    if (!watch) return;
    const fresh = [];
    for (const item of events) {
      const id = item.data && item.data.eventId;
      if (id && watch.lastEventId && !after(id, watch.lastEventId)) continue;
      if (id) watch.lastEventId = id;
      fresh.push(item);
    }
    if (fresh.length) watch.handler(fresh);
    if (watch.joined) for (const item of fresh) for (const listener of this.newsListeners) listener(sessionId, item);
  }

  /** @param {(sessionId: string, item: SessionEvent) => void} listener */
  onNews(listener) {
    this.newsListeners.add(listener);
    return () => this.newsListeners.delete(listener);
  }

  /** The history we missed, over REST, then a join from its end.
   * @param {string} sessionId */
  async _resync(sessionId) {
    const watch = this.watched.get(sessionId);
    if (!watch) return;
    if (watch.newest && watch.lastEventId) {
      const page = await api("GET", `/api/sessions/${sessionId}/events?limit=${NEWEST_PAGE}&before=${NEWEST}`);
      if (this.watched.get(sessionId) !== watch) return;
      const events = page.events.map((/** @type {any} */ e) => ({ event: e.event, data: e.data }));
      const last = events.length ? events[events.length - 1].data.eventId : null;
      if (last && after(last, watch.lastEventId)) {
        watch.lastEventId = last;
        watch.handler([{ event: "session:history", data: { events, firstEventId: page.firstEventId, hasMore: page.hasMore } }]);
      }
      watch.epoch = null;
      await this._join(sessionId);
      return;
    }
    for (;;) {
      const query = watch.lastEventId ? `&after=${encodeURIComponent(watch.lastEventId)}` : "";
      const page = await api("GET", `/api/sessions/${sessionId}/events?limit=1000${query}`);
      this._deliver(sessionId, page.events.map((/** @type {any} */ e) => ({ event: e.event, data: e.data })));
      if (page.events.length < 1000) break;
    }
    watch.epoch = null;
    await this._join(sessionId);
  }
}
