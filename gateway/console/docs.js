// @ts-check
/** The REST API's OpenAPI document (`/api/openapi.json`), rendered: every operation with its
 * parameters, body and answers, then every schema they name. Our own small renderer (no
 * CDN, no Swagger UI): the page runs offline, under the console's Content-Security-Policy.
 */
import { html, render, useEffect, useState } from "./vendor/preact-htm.module.js";

/** @typedef {{[key: string]: any}} Schema */
/** @typedef {{path: string, method: string, op: Schema}} Operation */

const METHODS = ["get", "post", "put", "patch", "delete"];

/** Text with `code` spans (as the docstrings write them) shown as code, never as HTML.
 * @param {string | undefined} text */
function prose(text) {
  return (text || "").split("`").map((piece, i) => (i % 2 ? html`<code>${piece}</code>` : piece));
}

/** @param {string} ref */
function refName(ref) {
  return ref.slice(ref.lastIndexOf("/") + 1);
}

/** Bounds and formats of a schema, as a short note: `1..256 chars`, `≤ 64 items`.
 * @param {Schema} s */
function limits(s) {
  /** @type {string[]} */
  const notes = [];
  /** @param {any} lo @param {any} hi @param {string} unit */
  const range = (lo, hi, unit) => {
    if (lo !== undefined && hi !== undefined) notes.push(`${lo}..${hi}${unit}`);
    else if (lo !== undefined) notes.push(`≥ ${lo}${unit}`);
    else if (hi !== undefined) notes.push(`≤ ${hi}${unit}`);
  };
  range(s.minLength, s.maxLength, " chars");
  range(s.minimum ?? s.exclusiveMinimum, s.maximum ?? s.exclusiveMaximum, "");
  range(s.minItems, s.maxItems, " items");
  if (s.pattern) notes.push(`/${s.pattern}/`);
  if (s.format) notes.push(s.format);
  if (s.default !== undefined && s.default !== null) notes.push(`default ${JSON.stringify(s.default)}`);
  return notes.length ? html` <span class="muted">(${notes.join(", ")})</span>` : null;
}

/** A schema as a compact type: `string`, `UserView[]`, `{ name: string, … }`, links to
 * the schemas it names.
 * @param {{schema: Schema | undefined}} props */
function Type({ schema }) {
  const s = schema || {};
  if (s.$ref) {
    const name = refName(s.$ref);
    return html`<a href=${"#schema-" + name}>${name}</a>`;
  }
  const options = s.anyOf || s.oneOf;
  if (options) {
    return html`${options.map(
      (/** @type {Schema} */ o, /** @type {number} */ i) => html`${i ? " | " : ""}<${Type} schema=${o} />`,
    )}${limits(s)}`;
  }
  if (s.enum) return html`${s.enum.map((/** @type {any} */ v) => JSON.stringify(v)).join(" | ")}`;
  if (s.const !== undefined) return html`${JSON.stringify(s.const)}`;
  if (s.type === "array") return html`<${Type} schema=${s.items} />[]${limits(s)}`;
  if (s.type === "object" || s.properties) {
    const properties = Object.entries(s.properties || {});
    if (!properties.length) {
      if (s.additionalProperties && typeof s.additionalProperties === "object") {
        return html`{ [key: string]: <${Type} schema=${s.additionalProperties} /> }`;
      }
      return html`object`;
    }
    const required = new Set(s.required || []);
    return html`{<ul>
      ${properties.map(
        ([name, p]) => html`<li>
          <code>${name}${required.has(name) ? "" : "?"}</code>: <${Type} schema=${p} />
          ${p.description ? html` <span class="muted">— ${prose(p.description)}</span>` : null}
        </li>`,
      )}
    </ul>}`;
  }
  if (s.type) return html`${Array.isArray(s.type) ? s.type.join(" | ") : s.type}${limits(s)}`;
  return html`any`;
}

/** @param {{item: Operation, schemas: {[name: string]: Schema}}} props */
function OperationView({ item, schemas }) {
  const { path, method, op } = item;
  const parameters = op.parameters || [];
  const body = op.requestBody?.content?.["application/json"]?.schema;
  return html`<section class="operation" id=${op.operationId}>
    <h3>
      <span class=${"method " + method}>${method.toUpperCase()}</span>
      <span class="path">${path}</span>
      <span>${op.summary}</span>
      <span class="lock">${op.security && op.security.length ? "bearer token" : "no token"}</span>
    </h3>
    ${op.description ? html`<p class="description">${prose(op.description)}</p>` : null}
    ${parameters.length
      ? html`<table>
          <thead><tr><th>parameter</th><th>in</th><th>type</th><th>meaning</th></tr></thead>
          <tbody>
            ${parameters.map(
              (/** @type {Schema} */ p) => html`<tr>
                <td><code>${p.name}${p.required ? "" : "?"}</code></td>
                <td>${p.in}</td>
                <td class="type"><${Type} schema=${p.schema} /></td>
                <td>${prose(p.description)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    ${body
      ? html`<p><strong>Body</strong>${op.requestBody.required ? ": " : " (optional): "}<${Type} schema=${body} /></p>
          <div class="type"><${Type} schema=${body.$ref ? schemas[refName(body.$ref)] : body} /></div>`
      : null}
    <table>
      <thead><tr><th>status</th><th>answer</th><th>meaning</th></tr></thead>
      <tbody>
        ${Object.entries(op.responses || {}).map(([status, answer]) => {
          const content = Object.entries(answer.content || {});
          return html`<tr>
            <td class="status">${status}</td>
            <td class="type">
              ${content.map(
                ([type, media]) => html`<div><${Type} schema=${media.schema} />
                  ${type === "application/json" ? null : html` <span class="muted">${type}</span>`}</div>`,
              )}
            </td>
            <td class="description">${prose(answer.description)}</td>
          </tr>`;
        })}
      </tbody>
    </table>
  </section>`;
}

/** @param {{doc: Schema}} props */
function Docs({ doc }) {
  const [filter, setFilter] = useState("");
  /** @type {Operation[]} */
  const operations = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const method of METHODS) {
      if (item[method]) operations.push({ path, method, op: item[method] });
    }
  }
  const wanted = filter.trim().toLowerCase();
  const shown = operations.filter(
    (o) => !wanted || `${o.method} ${o.path} ${o.op.summary}`.toLowerCase().includes(wanted),
  );
  const components = doc.components?.schemas || {};
  const schemas = Object.entries(components);
  return html`
    <h1>${doc.info?.title} <span class="muted">${doc.info?.version}</span></h1>
    <p class="lead">${prose(doc.info?.description)}</p>
    <p><a href="/api/openapi.json">openapi.json</a> (OpenAPI ${doc.openapi})${" · "}${operations.length} operations · <a href="#schemas">${schemas.length} schemas</a></p>
    <label class="filter">Filter operations
      <input type="search" value=${filter}
        onInput=${(/** @type {Event} */ e) => setFilter(/** @type {HTMLInputElement} */ (e.target).value)} />
    </label>
    <h2>Operations</h2>
    ${shown.map((o) => html`<${OperationView} item=${o} schemas=${components} key=${o.method + o.path} />`)}
    <h2 id="schemas">Schemas</h2>
    ${schemas.map(
      ([name, schema]) => html`<section class="operation" id=${"schema-" + name}>
        <h3><span class="path">${name}</span></h3>
        ${schema.description ? html`<p class="description">${prose(schema.description)}</p>` : null}
        <div class="type"><${Type} schema=${{ ...schema, $ref: undefined }} /></div>
      </section>`,
    )}`;
}

function Page() {
  const [doc, setDoc] = useState(/** @type {Schema | null} */ (null));
  const [error, setError] = useState("");
  useEffect(() => {
    fetch("/api/openapi.json")
      .then((answer) => {
        if (!answer.ok) throw new Error(`the document answered ${answer.status}`);
        return answer.json();
      })
      .then(setDoc, (/** @type {Error} */ e) => setError(e.message));
  }, []);
  if (error) return html`<p class="error" role="alert">Could not load the API document: ${error}</p>`;
  if (!doc) return html`<p class="boot">Loading the API document…</p>`;
  return html`<${Docs} doc=${doc} />`;
}

const root = document.getElementById("root");
if (root) {
  root.textContent = "";
  render(html`<${Page} />`, root);
}
