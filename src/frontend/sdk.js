/* abproxy SDK: this visitor's experiment groups, from the proxy in front of this site.
 *
 *   abproxy.assignments() -> Promise of {"moon_mars": {"group": "Mars", "assigned": "Mars",
 *                            "state": "active", "fallback": "Moon"}, ...}
 *   abproxy.group("moon_mars") -> Promise of "Mars" (null if the experiment does not apply)
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

  window.abproxy = { assignments: assignments, group: group };
})();
