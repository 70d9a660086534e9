// @ts-check
/** Notifications: Web Push to this device (`/api/push`, the service worker `/sw.js`), and
 * the page's own notification of what happens in a session it watches while it is hidden.
 *
 * The browser's permission is asked once, when the user turns notifications on. A push
 * and the page's notification of the same event carry the same tag (the event's key, as
 * the gateway makes it), so the device shows one.
 */
import { html, useEffect, useState } from "./vendor/preact-htm.module.js";
import { api, current, describe } from "./api.js";

export const KINDS = [
  ["permission.requested", "A worker needs permission"],
  ["input.requested", "A worker waits for input"],
  ["task.completed", "A task is done"],
  ["task.failed", "A task failed"],
];

const STORE = "orchestra.push";

/** This device's subscription record, by user: `{[userId]: {id, events}}`. */
function stored() {
  try {
    return JSON.parse(localStorage.getItem(STORE) || "{}");
  } catch {
    return {};
  }
}

function userId() {
  return ((current() || {}).user || {}).id || "";
}

/** @returns {{id: string, events: string[]} | null} */
function mine() {
  return stored()[userId()] || null;
}

/** @param {{id: string, events: string[]} | null} record */
function keep(record) {
  const all = stored();
  if (record) all[userId()] = record;
  else delete all[userId()];
  localStorage.setItem(STORE, JSON.stringify(all));
}

export function supported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

/** Register the service worker (once signed in); its registration, or null. */
export async function registerWorker() {
  if (!("serviceWorker" in navigator)) return null;
  try {
    return await navigator.serviceWorker.register("/sw.js");
  } catch {
    return null;
  }
}

/** @param {string} key */
function keyBytes(key) {
  const text = atob(key.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((key.length + 3) % 4));
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** Ask the browser (once), subscribe this device and tell the gateway.
 * @param {string[]} events */
export async function enable(events) {
  if (!supported()) throw new Error("This browser cannot receive push notifications.");
  const permission = await Notification.requestPermission();
  if (permission !== "granted") throw new Error("Notifications are blocked for this site in the browser's settings.");
  await registerWorker();
  const registration = await navigator.serviceWorker.ready;
  const { publicKey } = await api("GET", "/api/push/key");
  let subscription = await registration.pushManager.getSubscription();
  const bound = subscription && subscription.options && subscription.options.applicationServerKey;
  if (subscription && bound && !sameKey(new Uint8Array(bound), keyBytes(publicKey))) {
    await subscription.unsubscribe(); // made for another gateway's key
    subscription = null;
  }
  if (!subscription) {
    subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: keyBytes(publicKey),
    });
  }
  const answer = await api("POST", "/api/push/subscriptions", {
    subscription: subscription.toJSON(),
    events,
    label: deviceName(navigator.userAgent),
  });
  keep({ id: answer.subscription.id, events: answer.subscription.events });
  return answer.subscription;
}

/** "Chrome on Android", say: enough to tell one's devices apart in a list.
 * @param {string} agent */
export function deviceName(agent) {
  const browser = /Edg\//.test(agent) ? "Edge" : /Firefox\//.test(agent) ? "Firefox"
    : /Chrom(e|ium)\//.test(agent) ? "Chrome" : /Safari\//.test(agent) ? "Safari" : "A browser";
  const system = /Android/.test(agent) ? "Android" : /iPhone|iPad/.test(agent) ? "iOS"
    : /Mac OS X/.test(agent) ? "macOS" : /Windows/.test(agent) ? "Windows"
    : /Linux/.test(agent) ? "Linux" : "";
  return system ? `${browser} on ${system}` : browser;
}

/** @param {Uint8Array} a @param {Uint8Array} b */
function sameKey(a, b) {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Stop pushes to this device (signing out does it too). */
export async function disable() {
  const record = mine();
  keep(null);
  if (record) await api("DELETE", `/api/push/subscriptions/${record.id}`).catch(() => undefined);
  if (!("serviceWorker" in navigator)) return;
  const registration = await navigator.serviceWorker.getRegistration();
  const subscription = registration && (await registration.pushManager.getSubscription());
  if (subscription) await subscription.unsubscribe().catch(() => undefined);
}

/** The page's own notification of a watched session's event, while the tab is hidden.
 * @param {string} sessionId @param {string} event @param {any} data */
export async function notice(sessionId, event, data) {
  if (document.visibilityState !== "hidden" || !("Notification" in window)) return;
  if (Notification.permission !== "granted") return;
  let kind = "";
  let tag = "";
  let title = "";
  let body = "";
  if (event === "worker:permission") {
    kind = "permission.requested";
    tag = `${data.taskId}:${data.permissionId}:${kind}`;
    title = `Needs permission: ${data.tool}`;
    body = data.title || JSON.stringify(data.input || {}).slice(0, 180);
  } else if (event === "worker:status" && (data.status === "completed" || data.status === "error")) {
    kind = data.status === "completed" ? "task.completed" : "task.failed";
    tag = `${data.taskId}:${kind}`;
    title = data.status === "completed" ? "Done" : "Failed";
    body = data.message || "";
  } else {
    return;
  }
  const record = mine();
  if (record && record.events.includes(kind)) return; // the push says it, with the same tag
  const options = { body, tag, data: { url: `/#/sessions/${sessionId}` } };
  const registration = "serviceWorker" in navigator ? await navigator.serviceWorker.getRegistration() : null;
  if (registration) await registration.showNotification(title, options);
  else new Notification(title, options);
}

/** The notifications page: this device on or off, which events, and the other devices. */
export function Notifications() {
  const [devices, setDevices] = useState(/** @type {any[]} */ ([]));
  const [here, setHere] = useState(mine());
  const [events, setEvents] = useState(/** @type {string[]} */ ((mine() || {}).events || KINDS.map((k) => k[0])));
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [permission, setPermission] = useState("Notification" in window ? Notification.permission : "unsupported");

  const load = async () => {
    try {
      setDevices((await api("GET", "/api/push/subscriptions")).subscriptions);
    } catch (e) {
      setError(describe(e));
    }
  };
  useEffect(() => void load(), []);

  /** @param {() => Promise<any>} work */
  const run = async (work) => {
    setBusy(true);
    setError("");
    try {
      await work();
    } catch (e) {
      setError(describe(e));
    } finally {
      setBusy(false);
      setHere(mine());
      if ("Notification" in window) setPermission(Notification.permission);
      await load();
    }
  };
  const turnOn = () => run(() => enable(events));
  const turnOff = () => run(() => disable());
  const save = () =>
    run(async () => {
      const record = mine();
      if (!record) return;
      await api("PATCH", `/api/push/subscriptions/${record.id}`, { events });
      keep({ id: record.id, events });
    });
  /** @param {string} id */
  const remove = (id) =>
    run(async () => {
      if (here && here.id === id) await disable();
      else await api("DELETE", `/api/push/subscriptions/${id}`);
    });
  /** @param {string} kind @param {boolean} on */
  const toggle = (kind, on) => setEvents(on ? [...events, kind] : events.filter((k) => k !== kind));

  return html`<section class="panel notifications">
    <h2>Notifications</h2>
    <p>
      Get told on this device when a worker needs you, even with the console closed.
      ${permission === "denied" && html` <strong>Notifications are blocked for this site in the browser's settings.</strong>`}
      ${!supported() && html` <strong>This browser cannot receive push notifications.</strong>`}
    </p>
    <fieldset>
      <legend>Tell me when</legend>
      ${KINDS.map(
        ([kind, label]) => html`<label class="check">
          <input type="checkbox" name=${kind} checked=${events.includes(kind)}
            onChange=${(/** @type {any} */ e) => toggle(kind, e.target.checked)} /> ${label}
        </label>`,
      )}
    </fieldset>
    <div class="actions">
      ${here
        ? html`<button onClick=${save} disabled=${busy || !events.length}>Save</button>
            <button class="quiet" onClick=${turnOff} disabled=${busy}>Turn off on this device</button>`
        : html`<button onClick=${turnOn} disabled=${busy || !events.length || !supported()}>Turn on for this device</button>`}
    </div>
    <p role="status" class="note">${here ? "This device gets notifications." : "This device gets no notifications."}</p>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <h3>Your devices</h3>
    ${devices.length === 0
      ? html`<p class="note">None yet.</p>`
      : html`<ul class="devices">
          ${devices.map(
            (d) => html`<li>
              <span>${d.label || d.host}${here && here.id === d.id ? " (this device)" : ""}</span>
              <span class="note">${d.events.length} event${d.events.length === 1 ? "" : "s"} · ${d.host}</span>
              <button class="quiet" onClick=${() => remove(d.id)} disabled=${busy} aria-label=${`Remove ${d.label || d.host}`}>Remove</button>
            </li>`,
          )}
        </ul>`}
  </section>`;
}
