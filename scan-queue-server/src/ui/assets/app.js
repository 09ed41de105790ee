// The Scan Agent Tasks page's only script (served as a static file: the page's
// Content-Security-Policy allows no inline script). It polls the summary JSON and updates the
// counts and the queue-depth chart in place. It only ever writes numbers, with textContent
// and canvas calls; it never builds HTML.
(function () {
  'use strict';
  var url = document.body && document.body.getAttribute('data-summary');
  if (!url) { return; }
  var POLL_MS = 2000;
  var canvas = document.getElementById('depth-chart');

  function line(ctx, points, key, color, x, y) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    points.forEach(function (p, i) {
      var px = x(p.t), py = y(p[key]);
      if (i === 0) { ctx.moveTo(px, py); } else { ctx.lineTo(px, py); }
    });
    ctx.stroke();
  }

  function draw(depth, now) {
    if (!canvas || !canvas.getContext) { return; }
    var ctx = canvas.getContext('2d');
    var w = canvas.width, h = canvas.height, left = 40, bottom = 18, top = 8;
    ctx.clearRect(0, 0, w, h);
    var max = 1;
    depth.forEach(function (p) { max = Math.max(max, p.queued, p.running); });
    var start = now - now % 60000 - 59 * 60000;
    var x = function (t) { return left + (w - left - 8) * (t - start) / (59 * 60000); };
    var y = function (v) { return top + (h - top - bottom) * (1 - v / max); };
    ctx.fillStyle = '#555';
    ctx.font = '11px sans-serif';
    ctx.strokeStyle = '#ccc';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(left, top); ctx.lineTo(left, h - bottom); ctx.lineTo(w - 8, h - bottom);
    ctx.stroke();
    ctx.fillText(String(max), 4, top + 10);
    ctx.fillText('0', 4, h - bottom);
    ctx.fillText('-60 min', left, h - 4);
    ctx.fillText('now', w - 30, h - 4);
    if (depth.length === 0) { return; }
    line(ctx, depth, 'queued', '#1f6feb', x, y);
    line(ctx, depth, 'running', '#d9822b', x, y);
  }

  function refresh() {
    fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.json(); })
      .then(function (s) {
        Object.keys(s.counts).forEach(function (name) {
          document.querySelectorAll('[data-count]').forEach(function (el) {
            if (el.getAttribute('data-count') === name) { el.textContent = String(s.counts[name]); }
          });
        });
        document.querySelectorAll('[data-count="AGENTS"]').forEach(function (el) {
          el.textContent = String(s.agents);
        });
        draw(s.depth, s.now);
        var updated = document.getElementById('updated');
        if (updated) { updated.textContent = '(live)'; }
      })
      .catch(function () {
        var updated = document.getElementById('updated');
        if (updated) { updated.textContent = '(not updating: reload the page)'; }
      });
  }

  refresh();
  setInterval(refresh, POLL_MS);
}());
