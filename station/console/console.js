/* The operator console's page: the slots as the station sees them, live over Server-Sent
 * Events (/console/events). The station says what everything means (the words, the colour
 * kinds, the actions, boards/hour): this page only lays it out, so it shows what the
 * terminal view and the summary show. Every string from the station goes into the page as
 * text (textContent), never as markup. Read-only: nothing here changes anything. */
'use strict';
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var model = {
    slots: [], byName: {}, actions: {}, fallback: null, classes: {}, labels: {},
    silentMs: 10000, tally: null, station: '', line: true, ledger: true,
    stopping: false, poolPaused: false
  };
  /* What the page did, for tests and benchmarks (read from outside). */
  var stats = window.consoleStats = {
    messages: 0, events: 0, snapshots: 0, slotUpdates: 0, bytes: 0,
    applyMs: 0, maxApplyMs: 0, frames: 0, renderMs: 0, maxRenderMs: 0,
    lagN: 0, lagSum: 0, lagMax: 0, lastId: 0, gaps: 0, connects: 0, errors: 0,
    firstMessage: 0, lastMessage: 0, stopped: false
  };
  var dirty = new Set();
  var frameQueued = false;
  var attentionDirty = true;
  var es = null;
  var RECENT_MAX = 40;

  /* ---- Small helpers ------------------------------------------------------------------ */

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function setText(e, t) {
    t = t === undefined || t === null ? '' : String(t);
    if (e.textContent !== t) e.textContent = t;
  }

  /* "0.4s", "12s", "7m", "3h": as the terminal view writes times. */
  function duration(ms) {
    var s = ms / 1000;
    if (s < 10) return s.toFixed(1) + 's';
    if (s < 600) return Math.round(s) + 's';
    if (s < 36000) return Math.round(s / 60) + 'm';
    return Math.round(s / 3600) + 'h';
  }

  function hms(secs) {
    secs = Math.max(0, Math.floor(secs));
    var h = Math.floor(secs / 3600), m = Math.floor(secs / 60) % 60, s = secs % 60;
    return h + ':' + (m < 10 ? '0' : '') + m + ':' + (s < 10 ? '0' : '') + s;
  }

  function action(reason) {
    return (reason && model.actions[reason]) || model.fallback ||
      { 'class': 'engineer', class_name: 'call engineer', words: reason || '', todo: '' };
  }

  /* The instruction, unless it only repeats the tag and the words ("call an engineer: " and
   * the reason). */
  function todo(a) {
    return a['class'] === 'engineer' ? '' : a.todo;
  }

  function tag(a) {
    return el('span', 'tag c-' + a['class'], a.class_name.toUpperCase());
  }

  /* What every slot's name starts with, as the terminal view leaves it out of its grid: not
   * ending inside a number ("board1" of board10..board19 would leave "0".."9"), and leaving
   * a character of every name. */
  function commonPrefix(names) {
    if (names.length < 2) return '';
    var p = names[0].length, min = Infinity;
    names.forEach(function (n) {
      var k = 0;
      while (k < p && n[k] === names[0][k]) k++;
      p = k;
      min = Math.min(min, n.length);
    });
    if (p >= min) p = min - 1;
    while (p > 0 && /[0-9]/.test(names[0][p - 1])) p--;
    return names[0].slice(0, Math.max(p, 0));
  }

  function today() {
    var d = new Date();
    var p = function (n) { return (n < 10 ? '0' : '') + n; };
    return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate());
  }

  /* ---- Slots ------------------------------------------------------------------------- */

  function makeCell(s) {
    var c = el('div', 'slot');
    var l1 = c.appendChild(el('div', 'l1'));
    var l2 = c.appendChild(el('div', 'l2'));
    c.dataset.slot = s.name;
    c.name = l1.appendChild(el('span', 'name'));
    c.word = l1.appendChild(el('span', 'word'));
    c.dev = l2.appendChild(el('span', 'dev'));
    c.time = l2.appendChild(el('span', 'time'));
    c.act = c.appendChild(el('span', 'act'));
    c.todo = c.appendChild(el('span', 'todo'));
    c.addEventListener('click', function () { openDetail(s.name); });
    return c;
  }

  function updateSlot(o, now) {
    var s = model.slots[o.i];
    if (!s || s.name !== o.name) {
      s = model.byName[o.name];
      if (!s) return;
    }
    for (var k in o) s[k] = o[k];
    s.t0 = now - o.ms;
    dirty.add(s);
    stats.slotUpdates++;
  }

  function renderCell(s, now) {
    var c = s.cell;
    var failed = s.kind === 'fail';
    var a = failed ? action(s.reason) : null;
    var cls = 'slot ' + model.size + ' k-' + s.kind + (s.stuck ? ' stuck' : '') +
      (s.word === 'no answer' ? ' silent' : '') + (a ? ' c-' + a['class'] : '');
    if (c.className !== cls) c.className = cls;
    setText(c.name, model.size === 'size-s' || model.size === 'size-xs' ? s.short : s.name);
    setText(c.word, s.note && s.kind === 'busy' ? s.word + ' (' + s.note + ')' : s.word);
    setText(c.dev, s.device_id ? s.device_id.slice(0, 13) : '');
    setText(c.time, duration(Math.max(0, now - s.t0)));
    setText(c.act, a ? a.class_name.toUpperCase() + ': ' + a.words : '');
    setText(c.todo, a ? todo(a) : '');
    if (a) {
      c.dataset.action = a['class'];
      c.title = s.name + ': ' + a.words + ': ' + a.todo + (s.error ? ' (' + s.error + ')' : '');
    } else {
      delete c.dataset.action;
      c.title = s.name + ': ' + s.word + (s.device_id ? ' ' + s.device_id : '') +
        (s.error ? ' (' + s.error + ')' : '');
    }
  }

  /* The largest cells that show every slot in the grid without scrolling. */
  function layout() {
    var g = $('grid');
    var n = model.slots.length;
    var w = g.clientWidth - 12, h = g.clientHeight - 12, gap = 3;
    var best = 1, bestScore = -1, ratio = 1.6;
    if (!n || w <= 0 || h <= 0) return;
    for (var cols = 1; cols <= n; cols++) {
      var rows = Math.ceil(n / cols);
      var cw = (w - gap * (cols - 1)) / cols, ch = (h - gap * (rows - 1)) / rows;
      var score = Math.min(cw, ch * ratio);
      if (score > bestScore) { bestScore = score; best = cols; }
    }
    var r = Math.ceil(n / best);
    var cellW = (w - gap * (best - 1)) / best;
    var cellH = Math.min((h - gap * (r - 1)) / r, cellW / 1.2);
    g.style.gridTemplateColumns = 'repeat(' + best + ', minmax(0, 1fr))';
    g.style.gridAutoRows = Math.floor(cellH) + 'px';
    model.size = cellH >= 84 && cellW >= 170 ? 'size-l' : cellH >= 50 && cellW >= 100 ? 'size-m' :
      cellH >= 22 && cellW >= 64 ? 'size-s' : 'size-xs';
    model.slots.forEach(function (s) { dirty.add(s); });
    queueFrame();
  }

  function snapshot(o, now) {
    model.station = o.station;
    model.actions = o.actions || {};
    model.fallback = o.fallback;
    model.classes = o.classes || {};
    model.labels = o.labels || {};
    model.silentMs = o.silent_ms;
    model.line = o.line;
    model.ledger = o.ledger;
    model.slots = [];
    model.byName = {};
    var g = $('grid');
    var frag = document.createDocumentFragment();
    (o.slots || []).forEach(function (x) {
      var s = { cell: null };
      for (var k in x) s[k] = x[k];
      s.t0 = now - x.ms;
      s.cell = makeCell(s);
      model.slots[x.i] = s;
      model.byName[x.name] = s;
      frag.appendChild(s.cell);
    });
    model.slots = model.slots.filter(function (s) { return s; });
    model.prefix = commonPrefix(model.slots.map(function (s) { return s.name; }));
    model.slots.forEach(function (s) { s.short = s.name.slice(model.prefix.length); });
    g.replaceChildren(frag);
    setText($('station'), o.station);
    document.title = 'Station ' + o.station;
    setText($('bph-label'), model.labels.boards_per_hour || 'boards/hour');
    $('bph-box').title = model.labels.boards_per_hour_definition || '';
    document.querySelector('main').className = model.line ? '' : 'noline';
    $('grid').hidden = !model.line;
    $('line-side').hidden = !model.line;
    $('slots-summary').hidden = !model.line;
    $('totals').hidden = !model.line;
    $('bph-box').hidden = !model.line;
    $('report-box').hidden = !model.ledger;
    $('search').hidden = !model.ledger;
    tally(o.tally);
    $('recent').replaceChildren();
    (o.recent || []).forEach(recent);
    stats.snapshots++;
    attentionDirty = true;
    layout();
  }

  /* ---- Header, banner, attention ------------------------------------------------------ */

  function tally(t) {
    if (!t) return;
    model.tally = t;
    setText($('t-boards'), t.boards || 0);
    setText($('t-passed'), t.passed || 0);
    setText($('t-failed'), t.failed || 0);
    setText($('t-abandoned'), t.abandoned || 0);
    $('t-abandoned-box').hidden = !t.abandoned;
    setText($('t-reused'), t.reused || 0);
    $('t-reused-box').hidden = !t.reused;
    setText($('t-bph'), t.boards_per_hour || 0);
    setText($('uptime'), 'up ' + hms(t.uptime_s || 0));
    var au = t.authorizations || [];
    $('auths').hidden = !au.length;
    $('auths').replaceChildren.apply($('auths'), [document.createTextNode('authorizations:')].concat(
      au.map(function (a) {
        var e = document.createElement('span');
        e.className = 'auth' + (a.used === null ? '' : a.left <= 0 ? ' fail' : a.low ? ' low' : '');
        e.textContent = ' ' + a.lot + ' ' + (a.used === null ? '?' : a.left) + '/' + a.units + ' left';
        return e;
      })));
    var p = t.pool;
    if (!p || !p.open) {
      setText($('pool'), 'signing: closed');
    } else {
      setText($('pool'), 'signing: ' + p.workers + ' workers, ' + p.in_pool + ' in the pool, ' +
        p.signed + ' signed' + (p.pauses ? ', paused ' + p.pauses + (p.pauses === 1 ? ' time' : ' times') : ''));
    }
    model.poolPaused = !!(p && p.open && p.paused);
    model.pauseReason = p ? p.reason : '';
    model.pausedS = p ? p.paused_s : 0;
    model.stopping = model.stopping || !!t.stopping;
    banner();
  }

  function banner() {
    var b = $('banner');
    if (model.poolPaused) {
      var queued = model.slots.filter(function (s) { return s.state === 'queued'; }).length;
      b.className = '';
      setText(b, 'SIGNING PAUSED ' + hms(model.pausedS || 0) + ', ' + queued +
        ' boards wait for certificates (none fails for it): ' +
        (model.pauseReason || 'HSM unavailable'));
      b.hidden = false;
    } else if (model.stopping) {
      b.className = 'stopping';
      setText(b, 'The station is stopping: boards in flight are left as they are and resume ' +
        'when it runs again.');
      b.hidden = false;
    } else if (model.lost) {
      b.className = 'stopping';
      setText(b, 'No connection to the station: what this page shows may be old. Reconnecting.');
      b.hidden = false;
    } else {
      b.hidden = true;
    }
  }

  function attention() {
    var list = $('attention');
    var items = [];
    var order = { failed: 0, stuck: 1, busy: 2, problem: 3 };
    model.slots.forEach(function (s) {
      if (s.attention) items.push({ s: s, why: order[s.attention] });
    });
    items.sort(function (x, y) { return x.why - y.why || x.s.i - y.s.i; });
    var counts = [0, 0, 0, 0];
    items.forEach(function (x) { counts[x.why]++; });
    var parts = [];
    if (counts[0]) parts.push(counts[0] + ' failed');
    if (counts[1]) parts.push(counts[1] + ' stuck');
    if (counts[2] + counts[3]) parts.push(counts[2] + counts[3] + ' with problems');
    setText($('att-count'), parts.length ? parts.join(', ') : 'none');
    var frag = document.createDocumentFragment();
    items.slice(0, 200).forEach(function (x) {
      var s = x.s;
      var li = el('li', 'att-' + s.attention);
      li.dataset.slot = s.name;
      li.appendChild(el('span', 'who', s.name));
      li.appendChild(document.createTextNode(' '));
      if (x.why === 0) {
        var a = action(s.reason);
        li.dataset.action = a['class'];
        li.appendChild(tag(a));
        li.appendChild(document.createTextNode(' ' + a.words));
        if (todo(a)) li.appendChild(el('span', 'todo', todo(a)));
      } else if (x.why === 1) {
        li.appendChild(el('span', 'tag c-engineer', 'STUCK'));
        li.appendChild(document.createTextNode(' in ' + s.word + ' for ' +
          duration(performance.now() - s.t0) + (s.note ? ' (' + s.note + ')' : '')));
      } else if (x.why === 2) {
        li.appendChild(el('span', 'tag c-retry', 'BUSY'));
        li.appendChild(document.createTextNode(' in ' + s.word + ': ' + s.note));
      } else {
        li.appendChild(el('span', 'tag c-retry', 'CHECK'));
        li.appendChild(document.createTextNode(' ' + s.word));
      }
      if (s.device_id) li.appendChild(el('span', 'err', s.device_id));
      if (s.error) li.appendChild(el('span', 'err', s.error));
      li.addEventListener('click', function () { openDetail(s.name); });
      frag.appendChild(li);
    });
    list.replaceChildren(frag);
    var busy = 0, wait = 0, done = 0, off = 0;
    model.slots.forEach(function (s) {
      if (s.kind === 'busy') busy++;
      else if (s.kind === 'waiting') wait++;
      else if (s.kind === 'pass' || s.kind === 'fail') done++;
      else off++;
    });
    setText($('slots-summary'), model.slots.length + ' slots' +
      (model.prefix ? ' (' + model.prefix + '*)' : '') + ': ' + busy + ' busy, ' + wait +
      ' waiting, ' + done + ' finished, ' + off + ' offline');
  }

  function recent(o) {
    var list = $('recent');
    var li = el('li', o.event);
    var text = o.slot + ' ' + (o.device_id || '') + ': ';
    if (o.event === 'pass') {
      text += 'pass' + (o.reused ? ' (delivered again)' : '');
    } else if (o.event === 'fail') {
      var a = action(o.reason);
      text += a.class_name + ': ' + a.words;
    } else {
      text += 'abandoned (the station stopped)';
    }
    li.textContent = (o.ts ? o.ts.slice(11, 19) + ' ' : '') + text;
    list.insertBefore(li, list.firstChild);
    while (list.childNodes.length > RECENT_MAX) list.removeChild(list.lastChild);
  }

  /* ---- Drawing ------------------------------------------------------------------------ */

  function queueFrame() {
    if (frameQueued) return;
    frameQueued = true;
    requestAnimationFrame(frame);
  }

  function frame() {
    var t0 = performance.now();
    frameQueued = false;
    dirty.forEach(function (s) { renderCell(s, t0); });
    if (dirty.size) attentionDirty = true;
    dirty.clear();
    if (attentionDirty) {
      attentionDirty = false;
      attention();
      banner();
    }
    var ms = performance.now() - t0;
    stats.frames++;
    stats.renderMs += ms;
    if (ms > stats.maxRenderMs) stats.maxRenderMs = ms;
  }

  /* Times move on by themselves; words and colours come from the station. */
  setInterval(function () {
    if (model.size === 'size-xs' || model.size === 'size-s') return;
    var now = performance.now();
    model.slots.forEach(function (s) { setText(s.cell.time, duration(Math.max(0, now - s.t0))); });
  }, 1000);

  /* ---- The stream --------------------------------------------------------------------- */

  function onMessage(e) {
    var t0 = performance.now();
    var o;
    stats.messages++;
    stats.bytes += e.data.length;
    /* Ids follow one another on one stream: a jump means messages were lost. */
    if (stats.lastId && +e.lastEventId !== stats.lastId + 1) stats.gaps++;
    stats.lastId = +e.lastEventId || stats.lastId;
    if (!stats.firstMessage) stats.firstMessage = t0;
    stats.lastMessage = t0;
    try { o = JSON.parse(e.data); } catch (err) { stats.errors++; return; }
    if (o.ts) {
      var lag = Date.now() - Date.parse(o.ts);
      if (!isNaN(lag)) {
        stats.lagN++;
        stats.lagSum += lag;
        if (lag > stats.lagMax) stats.lagMax = lag;
      }
    }
    switch (o.event) {
    case 'snapshot':
      snapshot(o, t0);
      break;
    case 'slots':
      o.slots.forEach(function (x) { updateSlot(x, t0); });
      queueFrame();
      break;
    case 'tally':
      tally(o);
      break;
    case 'stopping':
      model.stopping = true;
      stats.stopped = true;
      tally(o);
      break;
    case 'pass': case 'fail': case 'abandoned':
      stats.events++;
      recent(o);
      break;
    case 'pool':
      stats.events++;
      model.poolPaused = !!o.paused;
      model.pauseReason = o.reason || '';
      model.pausedS = 0;
      banner();
      break;
    default:
      stats.events++;
    }
    var ms = performance.now() - t0;
    stats.applyMs += ms;
    if (ms > stats.maxApplyMs) stats.maxApplyMs = ms;
  }

  function connect() {
    es = new EventSource('/console/events');
    es.onopen = function () {
      stats.connects++;
      model.lost = false;
      $('conn').className = 'conn-live';
      setText($('conn'), 'live');
      banner();
    };
    es.onmessage = onMessage;
    es.onerror = function () {
      model.lost = true;
      $('conn').className = model.stopping ? 'conn-lost' : 'conn-wait';
      setText($('conn'), model.stopping ? 'station stopped' : 'reconnecting');
      banner();
    };
  }

  /* ---- Details, ledger, report --------------------------------------------------------- */

  function fields(dl, pairs) {
    dl.replaceChildren();
    pairs.forEach(function (p) {
      if (p[1] === undefined || p[1] === null || p[1] === '') return;
      dl.appendChild(el('dt', null, p[0]));
      dl.appendChild(el('dd', null, p[1]));
    });
  }

  function rowsTable(rows, into) {
    into.replaceChildren();
    if (!rows.length) {
      into.appendChild(el('p', 'dim', 'no ledger row'));
      return;
    }
    var t = el('table');
    var head = el('tr');
    ['id', 'serial', 'device id', 'state', 'reason', 'slot', 'created', 'delivered', 'certificate']
      .forEach(function (h) { head.appendChild(el('th', null, h)); });
    t.appendChild(head);
    rows.forEach(function (r) {
      var tr = el('tr');
      tr.className = 'row-' + r.state;
      [r.id, r.serial, r.device_id, r.state, r.reason, r.slot, r.created, r.delivered_at]
        .forEach(function (v) { tr.appendChild(el('td', null, v === null ? '' : v)); });
      var td = el('td');
      if (r.cert_pem) {
        var d = el('details');
        d.appendChild(el('summary', null, 'PEM'));
        d.appendChild(el('pre', null, r.cert_pem));
        td.appendChild(d);
      }
      tr.appendChild(td);
      t.appendChild(tr);
    });
    into.appendChild(t);
  }

  function getJSON(url) {
    return fetch(url, { credentials: 'same-origin', cache: 'no-store' }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.message || r.statusText);
        return j;
      });
    });
  }

  function ledgerInto(q, into) {
    setText(into, 'searching');
    return getJSON('/console/ledger?q=' + encodeURIComponent(q)).then(function (j) {
      rowsTable(j.rows, into);
      if (j.more) into.appendChild(el('p', 'dim', 'more rows than shown'));
    }, function (err) {
      setText(into, 'ledger: ' + err.message);
    });
  }

  /* The open slot's details: fetched when it opens and again every two seconds while it
   * stays open, so its console log grows as the board prints; the ledger row is looked up
   * once per device id. */
  var detail = { name: null, timer: null, device: null };

  function showSlot(s) {
    $('d-action').replaceChildren();
    if (s.action) {
      var a = s.action;
      $('d-action').appendChild(tag(a));
      $('d-action').appendChild(document.createTextNode(' ' + a.words + ': ' + a.todo));
    }
    fields($('d-fields'), [
      ['state', s.word + (s.note && s.kind === 'busy' ? ' (' + s.note + ')' : '')],
      ['for', duration(s.ms)],
      ['device id', s.device_id],
      ['failure', s.reason ? s.reason + ': ' + s.error : ''],
      ['last error', !s.reason ? s.error : ''],
      ['port', s.port],
      ['hardware id', s.board.hardware_id], ['sku', s.board.sku], ['serial no.', s.board.sn],
      ['firmware', s.board.firmware], ['key storage', s.board.key],
      ['boards', s.handled + ' (' + s.passed + ' passed)']
    ]);
    setText($('d-console'), s.console || '(nothing yet)');
    if (s.device_id === detail.device) return;
    detail.device = s.device_id;
    if (s.device_id && model.ledger) ledgerInto(s.device_id, $('d-ledger'));
    else setText($('d-ledger'), 'no device id yet');
  }

  function refreshDetail() {
    var name = detail.name;
    if (!$('detail').open) {
      clearInterval(detail.timer);
      detail.timer = null;
      return;
    }
    getJSON('/console/slot?name=' + encodeURIComponent(name)).then(function (s) {
      if (detail.name === name) showSlot(s);
    }, function (err) {
      if (detail.name === name) setText($('d-console'), 'slot: ' + err.message);
    });
  }

  function openDetail(name) {
    var d = $('detail');
    detail.name = name;
    detail.device = null;
    setText($('d-title'), 'slot ' + name);
    $('d-action').replaceChildren();
    $('d-fields').replaceChildren();
    setText($('d-console'), 'loading');
    setText($('d-ledger'), '');
    if (!d.open) d.showModal();
    refreshDetail();
    if (!detail.timer) detail.timer = setInterval(refreshDetail, 2000);
  }

  $('search').addEventListener('submit', function (e) {
    e.preventDefault();
    var q = $('q').value.trim();
    if (q) ledgerInto(q, $('results'));
  });

  function reportLink() {
    $('report').href = '/console/report.csv?day=' + encodeURIComponent($('day').value || today());
  }
  $('day').value = today();
  $('day').addEventListener('change', reportLink);
  reportLink();

  window.addEventListener('resize', layout);
  connect();
})();
