// @ts-check
/** What a session view keeps of its session: a window of at most 10,000 entries onto the
 * whole history, which the user moves by scrolling.
 *
 * Entries are kept in blocks of 200: a block never changes once it is full, so it is never
 * rendered again, and the browser skips laying out the blocks out of view. At the newest
 * end the window follows the live events; scrolled back, it grows at the top with pages
 * read over REST (`GET /api/sessions/{id}/events?before=`) and gives up blocks at the
 * bottom, and then stops following: live events are only counted until the user comes
 * back, when the newest are read again (`before` just past the last live one, or `after`
 * the window's end page by page), with the live events that came meanwhile held aside,
 * so that every event is shown once, in order.
 *
 * No DOM here: the view (`session.js`) renders the blocks and keeps the scroll position.
 */
import { after } from "./live.js";

export const BLOCK = 200;
/** The most blocks kept (10,000 entries). */
export const MAX_BLOCKS = 50;
/** Events asked for per REST page: a few screens' worth, quick to read and to render
 * (an AI session's events may be large). */
export const PAGE = 500;
/** Live entries held aside while the newest are read; past this, the read starts again. */
const PENDING_MAX = 5000;
/** Permission ids whose tool is remembered (a resolution names no tool). */
const TOOLS_MAX = 1000;

/** @typedef {{key: string, kind: string, data: any}} Entry */

/** The eventId just past `id`: the events `before` it end with `id`'s.
 * @param {string} id */
export function justAfter(id) {
  const [ms, seq] = id.split("-");
  return `${ms}-${Number(seq || 0) + 1}`;
}

/** The entry an event is shown as, or null (not shown, or no eventId).
 * @param {string} event @param {any} data @param {Map<string, string>} tools permission
 * ids and their tools, learnt here from the requests */
export function toEntry(event, data, tools) {
  const key = data && data.eventId;
  if (!key) return null;
  if (event === "worker:permission") {
    if (tools.size >= TOOLS_MAX) tools.delete(/** @type {string} */ (tools.keys().next().value));
    tools.set(data.permissionId, data.tool);
    return null;
  }
  if (event === "worker:status") return { key, kind: "status", data };
  if (event === "worker:permission:resolved") {
    return { key, kind: "resolved", data: { ...data, tool: tools.get(data.permissionId) } };
  }
  // Only what is shown is kept: a busy worker's lines are most of the page.
  if (event === "task:stream") return { key, kind: "line", data: { type: data.type, data: data.data } };
  if (event === "worker:output") return { key, kind: `out-${data.type}`, data };
  if (event === "task:result") return { key, kind: "result", data };
  return null;
}

/** @param {Entry[]} entries */
function chunks(entries) {
  /** @type {Entry[][]} */
  const out = [];
  for (let i = 0; i < entries.length; i += BLOCK) out.push(entries.slice(i, i + BLOCK));
  return out;
}

export class EntryWindow {
  constructor() {
    /** @type {Entry[][]} */
    this.blocks = [];
    /** The oldest and newest eventIds the window covers (shown or not). */
    this.headId = /** @type {string | null} */ (null);
    this.tailId = /** @type {string | null} */ (null);
    /** Nothing is before `headId` (known once a read said so). */
    this.atStart = false;
    /** `tailId` is the newest event the page got live: live entries are added. */
    this.following = true;
    /** The newest eventId the page got live. */
    this.liveLastId = /** @type {string | null} */ (null);
    /** Live entries not shown since the window stopped following. */
    this.missed = 0;
    /** Live entries held aside while the newest are read (null: not reading). */
    this.pending = /** @type {Entry[] | null} */ (null);
    this.overflowed = false;
  }

  get size() {
    return this.blocks.reduce((n, block) => n + block.length, 0);
  }

  /** A live event: shown when following and new. `pinned`: the user is at the newest;
   * one who is not, with the window full, keeps what they are reading: the window stops
   * following rather than drop its top. Returns whether blocks were dropped at the top.
   * @param {string} id @param {Entry | null} entry @param {boolean} pinned */
  live(id, entry, pinned) {
    this.liveLastId = id;
    if (this.pending) {
      if (entry) this.pending.push(entry);
      if (this.pending.length > PENDING_MAX) {
        this.pending = [];
        this.overflowed = true;
      }
      return false;
    }
    if (!this.following) {
      if (entry) this.missed++;
      return false;
    }
    if (this.tailId && !after(id, this.tailId)) return false; // shown already
    if (entry && !pinned && this._full()) {
      this.following = false;
      this.missed = 1;
      return false;
    }
    this.tailId = id;
    if (!this.headId) this.headId = id;
    return entry ? this.append([entry]) : false;
  }

  _full() {
    const last = this.blocks[this.blocks.length - 1];
    return this.blocks.length >= MAX_BLOCKS && last.length >= BLOCK;
  }

  /** Newer entries at the bottom; the oldest blocks go past the bound. Whether any went.
   * @param {Entry[]} entries */
  append(entries) {
    let rest = entries;
    const last = this.blocks[this.blocks.length - 1];
    if (last && last.length < BLOCK && rest.length) {
      // In place: the view renders a block again when its size changed.
      const room = BLOCK - last.length;
      last.push(...rest.slice(0, room));
      rest = rest.slice(room);
    }
    this.blocks.push(...chunks(rest));
    if (this.blocks.length <= MAX_BLOCKS) return false;
    this.blocks = this.blocks.slice(this.blocks.length - MAX_BLOCKS);
    this.atStart = false;
    this.headId = this.blocks[0][0].key;
    return true;
  }

  /** An older page, read `before` the head: `firstEventId` and `hasMore` as the gateway
   * answered. The newest blocks go past the bound, and the window stops following.
   * @param {Entry[]} entries @param {string} firstEventId @param {boolean} hasMore */
  prepend(entries, firstEventId, hasMore) {
    this.blocks = [...chunks(entries), ...this.blocks];
    this.headId = firstEventId;
    this.atStart = !hasMore;
    if (!this.tailId && entries.length) this.tailId = entries[entries.length - 1].key;
    if (this.blocks.length <= MAX_BLOCKS) return;
    this.blocks = this.blocks.slice(0, MAX_BLOCKS);
    this._detach(this.blocks[MAX_BLOCKS - 1]);
  }

  /** @param {Entry[]} lastBlock */
  _detach(lastBlock) {
    if (!this.liveLastId || (this.tailId && after(this.tailId, this.liveLastId))) {
      this.liveLastId = this.tailId;
    }
    this.tailId = lastBlock[lastBlock.length - 1].key;
    this.following = false;
    this.missed = 0;
  }

  /** Begin reading the newest: live events are held aside until `caughtUp`. */
  startCatchUp() {
    this.pending = [];
    this.overflowed = false;
  }

  /** The newest page, read `before` just past `upto`, replacing the window.
   * @param {Entry[]} entries @param {string} firstEventId @param {boolean} hasMore
   * @param {string} upto */
  reset(entries, firstEventId, hasMore, upto) {
    this.blocks = chunks(entries);
    this.headId = firstEventId;
    this.atStart = !hasMore;
    this.tailId = upto;
  }

  /** The end of a read of newer events: once it reached the newest (`reached`) and nothing
   * held aside was lost, the held entries go on and the window follows again. */
  /** @param {boolean} reached */
  caughtUp(reached) {
    const held = this.pending || [];
    this.pending = null;
    if (!reached || this.overflowed) return false;
    const tail = this.tailId;
    const fresh = tail ? held.filter((entry) => after(entry.key, tail)) : held;
    const dropped = this.append(fresh);
    if (this.liveLastId && (!this.tailId || after(this.liveLastId, this.tailId))) {
      this.tailId = this.liveLastId;
    }
    this.following = true;
    this.missed = 0;
    return dropped;
  }

  /** A read of newer events was abandoned. */
  abandonCatchUp() {
    this.pending = null;
  }
}
