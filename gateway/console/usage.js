// @ts-check
/** Usage: the tokens and cost of the user's tasks per day, session or agent
 * (`GET /api/usage`, an extension of the protocol: docs/protocol.md). Admins may look at
 * everyone's. */
import { html, useEffect, useState } from "./vendor/preact-htm.module.js";
import { api, describe } from "./api.js";

/** @typedef {{tasks: number, inputTokens: number, outputTokens: number, cacheReadTokens: number, cacheWriteTokens: number, costUsd: number}} Numbers */

const GROUPINGS = /** @type {const} */ ([
  ["day", "By day", "Day"],
  ["session", "By session", "Session"],
  ["agent", "By agent", "Agent"],
]);

const count = new Intl.NumberFormat("en-US");

/** @param {number} n */
export const tokens = (n) => count.format(n);

/** Dollars: cents above a dollar, up to six decimals below (a turn may cost 0.000184).
 * @param {number} usd */
export function dollars(usd) {
  if (usd >= 1) return `$${usd.toFixed(2)}`;
  const text = usd.toFixed(6).replace(/0+$/, "");
  return `$${text.endsWith(".") ? `${text}00` : text}`;
}

/** What a group is called on the page. @param {string} by @param {any} group */
function title(by, group) {
  if (by === "session") {
    const name = group.name || `session ${String(group.key).slice(0, 8)}`;
    return html`<a href=${`#/s/${group.key}`}>${name}</a>`;
  }
  if (by === "agent") return group.key ? group.name || `agent ${String(group.key).slice(0, 8)} (removed)` : "no agent";
  return group.key;
}

/** @param {{numbers: Numbers}} props */
function Totals({ numbers }) {
  const items = [
    ["Tasks", tokens(numbers.tasks)],
    ["Input tokens", tokens(numbers.inputTokens)],
    ["Output tokens", tokens(numbers.outputTokens)],
    ["Cache read", tokens(numbers.cacheReadTokens)],
    ["Cache write", tokens(numbers.cacheWriteTokens)],
    ["Cost", dollars(numbers.costUsd)],
  ];
  return html`<dl class="usage-totals" aria-label="Totals">
    ${items.map(([name, value]) => html`<div><dt>${name}</dt><dd>${value}</dd></div>`)}
  </dl>`;
}

/** @param {{admin: boolean}} props */
export function Usage({ admin }) {
  const [by, setBy] = useState("day");
  const [range, setRange] = useState({ from: "", to: "" });
  const [everyone, setEveryone] = useState(false);
  const [data, setData] = useState(/** @type {any} */ (null));
  const [error, setError] = useState("");
  useEffect(() => {
    const query = new URLSearchParams({ by });
    if (range.from) query.set("from", range.from);
    if (range.to) query.set("to", range.to);
    if (everyone) query.set("all", "1");
    let current = true;
    setError("");
    api("GET", `/api/usage?${query}`).then(
      (answer) => current && setData(answer),
      (e) => current && setError(describe(e)),
    );
    return () => {
      current = false;
    };
  }, [by, range.from, range.to, everyone]);
  const shown = data && data.by === by ? data : null;
  /** @param {"from" | "to"} field @param {any} event */
  const setDate = (field, event) => setRange({ ...range, [field]: event.target.value });
  return html`<section class="panel usage">
    <h2>Usage</h2>
    <div class="usage-controls">
      <div class="segmented" role="group" aria-label="Group by">
        ${GROUPINGS.map(([value, label]) => html`<button type="button" aria-pressed=${by === value}
          onClick=${() => setBy(value)}>${label}</button>`)}
      </div>
      <label>From <input type="date" value=${range.from} onChange=${(/** @type {any} */ e) => setDate("from", e)} /></label>
      <label>To <input type="date" value=${range.to} onChange=${(/** @type {any} */ e) => setDate("to", e)} /></label>
      ${admin && html`<label class="check"><input type="checkbox" checked=${everyone}
        onChange=${(/** @type {any} */ e) => setEveryone(e.target.checked)} /> everyone's</label>`}
    </div>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${shown && html`<${Totals} numbers=${shown.totals} />`}
    ${shown && shown.groups.length === 0 && html`<p>No usage reported in this range yet: AI workers report theirs at the end of each turn.</p>`}
    ${shown && shown.groups.length > 0 && html`<table class="usage-table">
      <thead><tr>
        <th>${GROUPINGS.find(([value]) => value === by)?.[2]}</th>
        <th>Tasks</th><th>Input</th><th>Output</th><th>Cache read / write</th><th>Cost</th>
      </tr></thead>
      <tbody>${shown.groups.map((/** @type {any} */ g) => html`<tr>
        <th scope="row">${title(by, g)}</th>
        <td data-label="Tasks">${tokens(g.tasks)}</td>
        <td data-label="Input">${tokens(g.inputTokens)}</td>
        <td data-label="Output">${tokens(g.outputTokens)}</td>
        <td data-label="Cache read / write">${tokens(g.cacheReadTokens)} / ${tokens(g.cacheWriteTokens)}</td>
        <td data-label="Cost">${dollars(g.costUsd)}</td>
      </tr>`)}</tbody>
    </table>`}
    ${shown && shown.truncated && html`<p class="muted">Only the first ${shown.groups.length} are shown: narrow the dates.</p>`}
  </section>`;
}
