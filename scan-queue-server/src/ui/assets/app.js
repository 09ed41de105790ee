// The Scan Agent Tasks page's only script (served as a static file: the page's
// Content-Security-Policy allows no inline script). It polls the page's JSON (`data-live` on
// <body>, with the page's own query) and updates the counts, the task table, the agents and
// the depth chart (the list), or the task and its history (a task's page), in place, until
// paused. It builds elements with createElement and writes text with textContent only: what
// an agent sent is never parsed as HTML.
(function () {
  'use strict';
  var live = document.body && document.body.getAttribute('data-live');
  if (!live) { return; }
  var POLL_MS = 2000;
  var base = live.slice(0, live.indexOf('/tasks') + '/tasks'.length);
  var url = live + window.location.search;
  var toggle = document.getElementById('live-toggle');
  var updated = document.getElementById('updated');
  var paused = false;
  try { paused = window.sessionStorage.getItem('scan-queue-paused') === '1'; } catch (e) { /* no storage */ }

  function say(text) { if (updated) { updated.textContent = text; } }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }

  function link(href, text, cls) {
    var a = el('a', text, cls);
    a.setAttribute('href', href);
    return a;
  }

  // `2026-11-24 05:24:06Z`, as the server writes it.
  function time(ms) {
    if (ms === null || ms === undefined) { return ''; }
    return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  }

  // `3d 4h`, `2h 5m`, `4m 10s`, `9s`, as the server writes it.
  function duration(since, now) {
    var s = Math.floor(Math.max(0, now - since) / 1000);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    if (d > 0) { return d + 'd ' + h + 'h'; }
    if (h > 0) { return h + 'h ' + m + 'm'; }
    if (m > 0) { return m + 'm ' + (s % 60) + 's'; }
    return s + 's';
  }

  function findings(f) {
    var cls = f.high > 0 ? 'findings f-high' : (f.medium > 0 ? 'findings f-medium' : 'findings');
    var span = el('span', f.high + 'H ' + f.medium + 'M ' + f.low + 'L ' + f.informational + 'I', cls);
    span.setAttribute('title', 'Findings: ' + f.high + ' high, ' + f.medium + ' medium, ' + f.low +
      ' low, ' + f.informational + ' informational');
    return span;
  }

  function cell(label, content, cls) {
    var td = el('td', null, cls);
    td.setAttribute('data-label', label);
    if (content instanceof Node) { td.appendChild(content); } else if (content !== null && content !== undefined) { td.textContent = String(content); }
    return td;
  }

  function agentLabel(t) { return t.agentName || t.agent || ''; }

  function taskRow(t, now) {
    var tr = el('tr');
    tr.setAttribute('data-task-id', String(t.id));
    tr.appendChild(cell('Id', link(base + '/task/' + t.id, t.id, 'task-link')));
    tr.appendChild(cell('Application', t.application));
    tr.appendChild(cell('Scanner', t.scanner, 'scanner'));
    tr.appendChild(cell('Target URL', t.targetUrl || '', 'url'));
    var status = cell('Status', el('span', t.status, 'badge s-' + t.status), 'status');
    if (t.findings) { status.appendChild(document.createTextNode(' ')); status.appendChild(findings(t.findings)); }
    if (t.retriedAs) { status.appendChild(document.createTextNode(' ')); status.appendChild(el('span', 'retried as ' + t.retriedAs, 'retried')); }
    tr.appendChild(status);
    tr.appendChild(cell('Reason', t.reason || '', 'reason'));
    var since = cell('In status', duration(t.sinceMs, now), 'since');
    since.setAttribute('title', time(t.sinceMs));
    tr.appendChild(since);
    tr.appendChild(cell('Attempts', t.attempts));
    tr.appendChild(cell('Created', time(t.createdMs)));
    var agent = cell('Agent', agentLabel(t), 'agent');
    if (t.agent) { agent.setAttribute('title', t.agent); }
    tr.appendChild(agent);
    return tr;
  }

  function empty(text, span) {
    var tr = el('tr'), td = el('td', text);
    td.setAttribute('colspan', String(span));
    tr.appendChild(td);
    return tr;
  }

  function tasks(list, now) {
    var tbody = document.querySelector('#tasks tbody');
    if (!tbody) { return; }
    var rows = list.rows.map(function (t) { return taskRow(t, now); });
    if (rows.length === 0) { rows.push(empty('No tasks.', 10)); }
    tbody.replaceChildren.apply(tbody, rows);
    var total = document.getElementById('total');
    if (total) { total.textContent = (list.totalExact ? '' : 'at least ') + list.total; }
  }

  function agentRow(a, now) {
    var tr = el('tr');
    tr.setAttribute('data-agent', a.id);
    var who = cell('Agent', el('span', a.name || '', 'agent-name'), 'agent');
    who.appendChild(document.createTextNode(' '));
    who.appendChild(el('small', a.id, 'uuid'));
    if (a.config) { who.appendChild(el('br')); who.appendChild(el('small', a.config, 'config')); }
    tr.appendChild(who);
    tr.appendChild(cell('Host / OS', (a.host || '') + (a.os ? ' (' + a.os + ')' : '')));
    var seen = cell('Last seen', el('span', a.live ? 'live' : 'silent', a.live ? 'badge live' : 'badge silent'), 'seen');
    seen.appendChild(document.createTextNode(' ' + (a.lastSeenMs === null ? 'not since start' : duration(a.lastSeenMs, now) + ' ago')));
    tr.appendChild(seen);
    var holds = cell('Holds', null, 'holds');
    a.tasks.forEach(function (t) {
      holds.appendChild(link(base + '/task/' + t.id, t.id));
      holds.appendChild(document.createTextNode(' (' + duration(t.sinceMs, now) + ') '));
    });
    tr.appendChild(holds);
    var revoke = el('td');
    revoke.appendChild(link(base + '/agent/' + a.id + '/revoke', 'Revoke…', 'revoke'));
    tr.appendChild(revoke);
    return tr;
  }

  function agents(list, now) {
    var tbody = document.querySelector('#agent-table tbody');
    if (!tbody) { return; }
    var rows = list.rows.map(function (a) { return agentRow(a, now); });
    if (rows.length === 0) { rows.push(empty('No scan agents.', 5)); }
    tbody.replaceChildren.apply(tbody, rows);
    var total = document.getElementById('agent-total');
    if (total) { total.textContent = String(list.total); }
  }

  function counts(c, agentsLive, registered) {
    document.querySelectorAll('[data-count]').forEach(function (e) {
      var name = e.getAttribute('data-count');
      if (name === 'AGENTS') { e.textContent = String(agentsLive); } else if (name === 'REGISTERED') { e.textContent = String(registered); } else if (Object.prototype.hasOwnProperty.call(c, name)) { e.textContent = String(c[name]); }
    });
  }

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
    var style = window.getComputedStyle(canvas);
    var w = canvas.width, h = canvas.height, left = 40, bottom = 18, top = 8;
    ctx.clearRect(0, 0, w, h);
    var max = 1;
    depth.forEach(function (p) { max = Math.max(max, p.queued, p.running); });
    var start = now - now % 60000 - 59 * 60000;
    var x = function (t) { return left + (w - left - 8) * (t - start) / (59 * 60000); };
    var y = function (v) { return top + (h - top - bottom) * (1 - v / max); };
    ctx.fillStyle = style.color || '#555';
    ctx.font = '11px sans-serif';
    ctx.strokeStyle = '#999';
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

  function text(id, value) {
    var e = document.getElementById(id);
    if (e) { e.textContent = value === null || value === undefined ? '' : String(value); }
    return e;
  }

  function entry(e) {
    var tr = el('tr');
    tr.appendChild(el('td', e.id));
    tr.appendChild(el('td', time(e.atMs)));
    tr.appendChild(el('td', e.message, 'msg'));
    return tr;
  }

  var loadedStatus = (document.getElementById('task-status') || {}).textContent;
  function task(d) {
    var t = d.task, now = d.now;
    text('task-stale', t.status === loadedStatus ? '' :
      'The status changed since this page was loaded: reload it for the actions that apply now.');
    var status = text('task-status', t.status);
    if (status) { status.className = 'badge s-' + t.status; }
    var since = text('task-since', duration(t.sinceMs, now));
    if (since) { since.setAttribute('title', time(t.sinceMs)); }
    text('task-attempts', t.attempts);
    text('task-started', time(t.startedMs));
    text('task-ended', time(t.endedMs));
    text('task-reason', t.reason);
    var agent = text('task-agent', agentLabel(t));
    if (agent && t.agent) { agent.setAttribute('title', t.agent); }
    var tbody = document.querySelector('#messages tbody');
    if (!tbody) { return; }
    var rows = d.head.map(entry);
    if (d.elided > 0) {
      var gap = empty('… ' + d.elided + ' message(s) not kept …', 3);
      gap.className = 'elided';
      rows.push(gap);
    }
    d.history.forEach(function (e) { rows.push(entry(e)); });
    tbody.replaceChildren.apply(tbody, rows);
  }

  function show(s) {
    if (s.task) { task(s); return; }
    counts(s.counts, s.agents.live, s.agents.total);
    tasks(s.tasks, s.now);
    agents(s.agents, s.now);
    draw(s.depth, s.now);
  }

  var timer = null, inflight = false;
  function refresh() {
    timer = null;
    if (paused || inflight) { return; }
    inflight = true;
    fetch(url, { credentials: 'same-origin', headers: { 'Accept': 'application/json' } })
      .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.json(); })
      .then(function (s) {
        if (paused) { return; }
        show(s);
        say('Live: updated ' + time(s.now));
        document.body.setAttribute('data-live-at', String(s.now));
      })
      .catch(function () { say('Not updating (the server did not answer); retrying.'); })
      .then(function () {
        inflight = false;
        if (!paused && timer === null) { timer = window.setTimeout(refresh, POLL_MS); }
      });
  }

  function setPaused(p) {
    paused = p;
    try { window.sessionStorage.setItem('scan-queue-paused', p ? '1' : '0'); } catch (e) { /* no storage */ }
    if (toggle) {
      toggle.textContent = p ? 'Resume live updates' : 'Pause live updates';
      toggle.setAttribute('aria-pressed', p ? 'true' : 'false');
    }
    if (p) {
      if (timer !== null) { window.clearTimeout(timer); timer = null; }
      say('Paused: the page shows the state when it was paused.');
    } else if (timer === null && !inflight) {
      refresh();
    }
  }

  if (toggle) { toggle.addEventListener('click', function () { setPaused(!paused); }); }
  setPaused(paused);
}());
