// @ts-check
/** Turning what workers print into elements: terminal text with its ANSI colours, and
 * assistant text as a small, safe subset of Markdown. Nothing is ever set as HTML: every
 * piece of text becomes a text node, so whatever a worker prints cannot inject markup.
 */
import { html } from "./vendor/preact-htm.module.js";

const SGR = /\x1b\[([0-9;]*)m/g;
// Other escape sequences (cursor moves, titles) are dropped, not shown as garbage.
const OTHER_ESCAPES = /\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;?]*[A-Za-ln-z]|\x1b[()][A-Za-z0-9]/g;

/** Text with ANSI SGR colour codes as spans with classes `fg-<n>` and `bold`.
 * @param {string} text */
export function ansi(text) {
  const clean = text.replace(OTHER_ESCAPES, "");
  /** @type {any[]} */
  const parts = [];
  let fg = 0;
  let bold = false;
  let last = 0;
  const push = (/** @type {string} */ piece) => {
    if (!piece) return;
    const classes = [fg ? `fg-${fg}` : "", bold ? "bold" : ""].filter(Boolean).join(" ");
    parts.push(classes ? html`<span class=${classes}>${piece}</span>` : piece);
  };
  for (const match of clean.matchAll(SGR)) {
    push(clean.slice(last, match.index));
    last = (match.index || 0) + match[0].length;
    for (const code of (match[1] || "0").split(";").map(Number)) {
      if (code === 0) {
        fg = 0;
        bold = false;
      } else if (code === 1) bold = true;
      else if (code === 22) bold = false;
      else if ((code >= 30 && code <= 37) || (code >= 90 && code <= 97)) fg = code;
      else if (code === 39) fg = 0;
    }
  }
  push(clean.slice(last));
  return parts;
}

/** Inline Markdown: `code`, **bold**, *emphasis*.
 * @param {string} text */
function inline(text) {
  /** @type {any[]} */
  const parts = [];
  const pattern = /(`[^`]+`|\*\*[^*]+\*\*|\*[^*\s][^*]*\*)/g;
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parts.push(text.slice(last, match.index));
    const token = match[0];
    if (token.startsWith("`")) parts.push(html`<code>${token.slice(1, -1)}</code>`);
    else if (token.startsWith("**")) parts.push(html`<strong>${token.slice(2, -2)}</strong>`);
    else parts.push(html`<em>${token.slice(1, -1)}</em>`);
    last = (match.index || 0) + token.length;
  }
  parts.push(text.slice(last));
  return parts;
}

/** Block Markdown: fenced code, headings, lists, paragraphs.
 * @param {string} text */
export function markdown(text) {
  /** @type {any[]} */
  const blocks = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith("```")) {
      const code = [];
      for (i++; i < lines.length && !lines[i].startsWith("```"); i++) code.push(lines[i]);
      blocks.push(html`<pre class="code">${code.join("\n")}</pre>`);
    } else if (/^#{1,6} /.test(line)) {
      blocks.push(html`<p class="heading">${inline(line.replace(/^#+ /, ""))}</p>`);
    } else if (/^\s*([-*]|\d+\.) /.test(line)) {
      const items = [];
      for (; i < lines.length && /^\s*([-*]|\d+\.) /.test(lines[i]); i++) {
        items.push(html`<li>${inline(lines[i].replace(/^\s*([-*]|\d+\.) /, ""))}</li>`);
      }
      i--;
      blocks.push(html`<ul>${items}</ul>`);
    } else if (line.trim()) {
      blocks.push(html`<p>${inline(line)}</p>`);
    }
  }
  return blocks;
}

/** @param {any} usage */
export function usageText(usage) {
  if (!usage) return "";
  const tokens = (usage.inputTokens || 0) + (usage.outputTokens || 0);
  const cost = typeof usage.costUsd === "number" ? ` · $${usage.costUsd.toFixed(4)}` : "";
  return `${tokens.toLocaleString()} tokens${cost}`;
}
