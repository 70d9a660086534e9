// @ts-check
/** The console's service worker: shows Web Push notifications, opens their session.
 *
 * A push's payload (`gateway/web_push.py`) is `{kind, title, body, url, tag, sessionId,
 * taskId}`. The notification's tag is the event's key: the same event arriving twice (a
 * delivery taken over by another gateway, or the page's own notification of it) replaces
 * the first rather than showing twice. A click focuses a console tab already open, on the
 * session, or opens one.
 */

/** @type {any} */
const worker = self;

worker.addEventListener("install", () => worker.skipWaiting());
worker.addEventListener("activate", (/** @type {any} */ event) => event.waitUntil(worker.clients.claim()));

worker.addEventListener("push", (/** @type {any} */ event) => {
  /** @type {any} */
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = { title: "Orchestra", body: event.data ? event.data.text() : "" };
  }
  const title = message.title || "Orchestra";
  event.waitUntil(
    worker.registration.showNotification(title, {
      body: message.body || "",
      tag: message.tag || undefined,
      renotify: Boolean(message.tag),
      requireInteraction: message.kind === "permission.requested",
      data: { url: message.url || "/", kind: message.kind, sessionId: message.sessionId },
    }),
  );
});

worker.addEventListener("notificationclick", (/** @type {any} */ event) => {
  event.notification.close();
  // This console's own origin, whatever address the gateway put in the link.
  const link = new URL((event.notification.data && event.notification.data.url) || "/", worker.location.origin);
  const url = new URL(`/${link.hash}`, worker.location.origin);
  event.waitUntil(
    (async () => {
      const tabs = await worker.clients.matchAll({ type: "window", includeUncontrolled: true });
      const tab = tabs.find((/** @type {any} */ t) => new URL(t.url).origin === url.origin);
      if (tab) {
        await tab.focus();
        return tab.navigate ? tab.navigate(url.href) : undefined;
      }
      return worker.clients.openWindow(url.href);
    })(),
  );
});
