// muster's console: keeps a page live without reloading it. The page's
// <main data-live="..."> names what it shows ("*": every service, else a
// service); a change to it, pushed by /ui/live as a Server-Sent Event,
// makes the page fetch its main part again and put it in place. Heartbeat
// ages tick each second. A lost connection shows the "stale" banner until
// the stream is back (the browser reconnects by itself).
"use strict";
(function () {
  var main = document.getElementById("main");
  var stale = document.getElementById("stale");
  if (!main) return;

  function fmt(ms) {
    if (ms < 1000) return ms + "ms ago";
    var s = ms / 1000;
    if (s < 60) return s.toFixed(1) + "s ago";
    var m = Math.floor(s / 60);
    if (m < 60) return m + "m" + Math.floor(s % 60) + "s ago";
    var h = Math.floor(m / 60);
    if (h < 48) return h + "h" + (m % 60) + "m ago";
    return Math.floor(h / 24) + "d ago";
  }
  function tick() {
    var now = Date.now();
    var ages = document.querySelectorAll(".age[data-seen]");
    for (var i = 0; i < ages.length; i++) {
      var seen = Number(ages[i].getAttribute("data-seen"));
      if (seen > 0) ages[i].textContent = fmt(Math.max(0, now - seen));
    }
  }
  setInterval(tick, 1000);
  tick();

  // Copy buttons: data-copy names the input whose value they copy.
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest ? ev.target.closest("button[data-copy]") : null;
    if (!b) return;
    var input = document.getElementById(b.getAttribute("data-copy"));
    if (!input) return;
    input.select();
    var done = function () { var s = b.parentNode.querySelector(".copied"); if (s) s.hidden = false; };
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
    } else { document.execCommand("copy"); done(); }
  });

  var live = main.getAttribute("data-live");
  if (!live || !window.EventSource) return;

  var pending = null;
  var busy = false;
  function refresh() {
    if (busy) { pending = pending || setTimeout(refresh, 250); return; }
    pending = null;
    busy = true;
    fetch(location.href, { headers: { "X-Muster-Fragment": "main" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 404 || !r.ok) return null;
        return r.text();
      })
      .then(function (html) {
        if (html !== null) { main.innerHTML = html; tick(); }
      })
      .catch(function () {})
      .then(function () { busy = false; });
  }
  function soon() {
    if (!pending) pending = setTimeout(refresh, 150);
  }

  var url = "live" + (live === "*" ? "" : "?service=" + encodeURIComponent(live));
  var base = document.querySelector("link[rel=stylesheet]").getAttribute("href").replace(/static\/app\.css$/, "");
  var es = new EventSource(base + url);
  var lastMessage = Date.now();
  var opened = false;
  es.onopen = function () {
    lastMessage = Date.now();
    // Back after a loss: the server may have restarted (ending every
    // session), so the whole page is fetched again, not only its main
    // part.
    if (opened && !stale.hidden) { location.reload(); return; }
    opened = true;
    stale.hidden = true;
  };
  es.addEventListener("change", function (ev) {
    lastMessage = Date.now();
    if (live === "*" || ev.data === live || ev.data === "*") soon();
  });
  es.onmessage = function () { lastMessage = Date.now(); };
  es.onerror = function () { stale.hidden = false; };
  // Comments (the keep-alive) fire no event: a stream silent for three
  // keep-alives is taken as lost, and reopened.
  setInterval(function () {
    if (Date.now() - lastMessage > 35000 && es.readyState === EventSource.OPEN) { stale.hidden = false; }
  }, 5000);
  // Qualities and ages move without changes: refresh them now and then.
  setInterval(soon, 15000);
})();
