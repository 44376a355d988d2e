/* abproxy SDK: this visitor's experiment groups, from the proxy in front of this site.
 *
 *   abproxy.assignments() -> Promise of {"moon_mars": {"group": "Mars", "assigned": "Mars",
 *                            "state": "active", "fallback": "Moon"}, ...}
 *   abproxy.group("moon_mars") -> Promise of "Mars" (null if the experiment does not apply)
 *   abproxy.track("button_click", {button: "reserve"}) -> sends the event to /_ab/events
 *                            (navigator.sendBeacon when available, so it survives a page
 *                            change; else fetch with keepalive); true if it was queued
 *
 * One request per page (cached); no dependencies. */
(function () {
  "use strict";
  var cached = null;

  function assignments() {
    if (!cached) {
      cached = fetch("/_ab/assignments?path=" + encodeURIComponent(location.pathname), {
        credentials: "same-origin",
        headers: { Accept: "application/json" }
      }).then(function (response) {
        if (!response.ok) {
          throw new Error("abproxy: /_ab/assignments answered " + response.status);
        }
        return response.json();
      });
      // A failed fetch is not cached: the next call tries again.
      cached.catch(function () { cached = null; });
    }
    return cached;
  }

  function group(key) {
    return assignments().then(function (all) {
      return Object.prototype.hasOwnProperty.call(all, key) ? all[key].group : null;
    });
  }

  function track(event, params) {
    var body = JSON.stringify({ event: String(event), ts: new Date().toISOString(), params: params || {} });
    if (navigator.sendBeacon) {
      return navigator.sendBeacon("/_ab/events", new Blob([body], { type: "application/json" }));
    }
    fetch("/_ab/events", {
      method: "POST",
      credentials: "same-origin",
      keepalive: true,
      headers: { "Content-Type": "application/json" },
      body: body
    }).catch(function () {});
    return true;
  }

  window.abproxy = { assignments: assignments, group: group, track: track };
})();
