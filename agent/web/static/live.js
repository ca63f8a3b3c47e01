// A running request's page keeps itself current: every 2 s it asks whether the record moved (a step finished,
// a layer answered, someone decided) and reloads when it did. Shipped with the package; no other script runs.
(function () {
  var body = document.body, url = body.getAttribute("data-live"), marker = body.getAttribute("data-marker");
  if (!url) { return; }
  function poll() {
    fetch(url, {credentials: "same-origin", cache: "no-store"}).then(function (response) {
      return response.ok ? response.json() : null;
    }).then(function (state) {
      if (state && state.marker !== marker) { window.location.reload(); return; }
      if (!state || state.running) { window.setTimeout(poll, 2000); }
    }).catch(function () { window.setTimeout(poll, 5000); });
  }
  window.setTimeout(poll, 2000);
})();
