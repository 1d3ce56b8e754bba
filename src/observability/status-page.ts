/**
 * The admin port's status page (GET /): one self-contained HTML document, no external script, style or
 * font (admin ports often sit on networks without internet access). It polls /status once a second and
 * draws the live rates from the counters there on a canvas, so it needs nothing but this process.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>livemux status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 12px 20px; display: flex; gap: 16px; align-items: baseline; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; }
  .badge { padding: 2px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
  .ok { background: #1f9d55; color: #fff; } .bad { background: #cc1f1a; color: #fff; } .warn { background: #f2d024; color: #1d2330; }
  main { padding: 16px 20px; display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 16px; }
  section { background: #fff; border-radius: 6px; padding: 12px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
  section h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .04em; color: #5a6374; }
  .big { font-size: 32px; font-weight: 600; margin-right: 24px; }
  table { border-collapse: collapse; width: 100%; } td, th { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eef0f3; }
  th { font-weight: 600; color: #5a6374; } .wide { grid-column: 1 / -1; } canvas { width: 100%; height: 220px; }
  .legend span { margin-right: 14px; } .err { color: #cc1f1a; white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 12px; }
  footer { padding: 0 20px 16px; color: #5a6374; font-size: 12px; }
</style>
</head>
<body>
<header><h1>livemux</h1><span id="proxy"></span><span id="ready" class="badge"></span><span id="drain" class="badge"></span><span id="updated"></span></header>
<main>
  <section><h2>Clients</h2><span class="big" id="connections">–</span>connections<br><span class="big" id="sessions">–</span>sessions</section>
  <section><h2>Sessions per business</h2><table id="businesses"><tr><th>business</th><th>sessions</th></tr></table></section>
  <section><h2>Routes</h2><table id="routes"></table><div class="err" id="reload-error"></div></section>
  <section class="wide"><h2>Backend endpoints</h2><table id="endpoints"><tr><th>endpoint</th><th>stream</th><th>healthy</th><th>breaker</th><th>last check</th></tr></table></section>
  <section class="wide"><h2>Live rates (per second, last 2 minutes)</h2>
    <div class="legend"><span style="color:#2b6cb0">&#9632; frames in</span><span style="color:#c05621">&#9632; frames out</span><span style="color:#2f855a">&#9632; new connections</span></div>
    <canvas id="chart" width="1200" height="220"></canvas></section>
</main>
<footer>Admin endpoint without authentication: keep it on loopback or a private network. JSON: <a href="status">/status</a> · <a href="metrics">/metrics</a> · <a href="config">/config</a></footer>
<script>
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const rows = (table, header, list) => { $(table).innerHTML = header + list.join(''); };
const samples = [];
let last = null;

function render(s) {
  $('proxy').textContent = s.proxyId;
  const ready = s.ready && !s.readinessFailedOnPurpose;
  $('ready').textContent = s.readinessFailedOnPurpose ? 'not ready (on purpose)' : ready ? 'ready' : 'not ready';
  $('ready').className = 'badge ' + (ready ? 'ok' : 'bad');
  $('drain').textContent = s.draining ? 'draining' : '';
  $('drain').className = s.draining ? 'badge warn' : '';
  $('connections').textContent = s.connections;
  $('sessions').textContent = s.sessions;
  const businesses = Object.entries(s.sessionsByBusiness || {});
  rows('businesses', '<tr><th>business</th><th>sessions</th></tr>',
    businesses.length ? businesses.map(([b, n]) => '<tr><td>' + esc(b) + '</td><td>' + n + '</td></tr>') : ['<tr><td colspan="2">none open</td></tr>']);
  rows('routes', '', [
    '<tr><th>file</th><td>' + esc(s.routes.file) + '</td></tr>',
    '<tr><th>version</th><td id="routes-version">' + s.routes.version + '</td></tr>',
    '<tr><th>loaded</th><td>' + esc(s.routes.loadedAt) + '</td></tr>',
    '<tr><th>last reload error</th><td>' + (s.routes.lastReloadError ? esc(s.routes.lastReloadErrorAt) : 'none') + '</td></tr>',
  ]);
  $('reload-error').textContent = s.routes.lastReloadError || '';
  const endpoints = Object.keys({ ...s.backends, ...s.health }).sort();
  rows('endpoints', '<tr><th>endpoint</th><th>stream</th><th>healthy</th><th>breaker</th><th>last check</th></tr>', endpoints.map((e) => {
    const h = s.health[e] || {};
    const healthy = h.healthy === undefined ? '' : '<span class="badge ' + (h.healthy ? 'ok">yes' : 'bad">no') + '</span>';
    const breaker = h.breaker ? '<span class="badge ' + (h.breaker === 'closed' ? 'ok' : h.breaker === 'open' ? 'bad' : 'warn') + '">' + esc(h.breaker) + '</span>' : '';
    return '<tr><td>' + esc(e) + '</td><td>' + esc(s.backends[e] || '') + '</td><td>' + healthy + '</td><td>' + breaker + '</td><td>' + esc(h.lastCheckResult || '') + ' ' + esc(h.lastCheck || '') + '</td></tr>';
  }));
  const now = Date.now();
  if (last) {
    const dt = (now - last.at) / 1000;
    const rate = (k) => Math.max(0, (s.totals[k] - last.totals[k]) / dt);
    samples.push({ in: rate('framesIn'), out: rate('framesOut'), conns: rate('connectionsAccepted') });
    if (samples.length > 120) samples.shift();
  }
  last = { at: now, totals: s.totals };
  drawChart();
  $('updated').textContent = 'updated ' + new Date(now).toLocaleTimeString();
}

function drawChart() {
  const c = $('chart'), g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...samples.flatMap((p) => [p.in, p.out, p.conns]));
  g.fillStyle = '#5a6374'; g.font = '12px system-ui'; g.fillText(max.toFixed(max < 10 ? 1 : 0) + '/s', 4, 12);
  g.strokeStyle = '#eef0f3'; g.beginPath(); g.moveTo(0, c.height - 1); g.lineTo(c.width, c.height - 1); g.stroke();
  const line = (key, color) => {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    samples.forEach((p, i) => { const x = (i / 119) * c.width, y = c.height - 4 - (p[key] / max) * (c.height - 20); i ? g.lineTo(x, y) : g.moveTo(x, y); });
    g.stroke();
  };
  line('in', '#2b6cb0'); line('out', '#c05621'); line('conns', '#2f855a');
}

async function poll() {
  try {
    const res = await fetch('status', { cache: 'no-store' });
    render(await res.json());
  } catch (err) {
    $('updated').textContent = 'cannot reach the proxy: ' + err.message;
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
`;
