// Headless-browser test of the admin status page (connector/admin/status_page.html).
//
//   node tests/browser/status_page_test.mjs ADMIN_URL DEAD_RECORD_ID [SCREENSHOT.png]
//
// ADMIN_URL is the admin server's base, e.g. http://127.0.0.1:8081. DEAD_RECORD_ID must be a dead letter
// there; the test replays it through the page. If the admin server has a token, pass it in the
// environment as ADMIN_TOKEN: the test then enters it in the page's token form.
// The server must also have delivered, in the last 24 hours, a record that arrived while it ran:
// the charts of the last 24 hours are checked against its /api/series (bars, points, labels).
// Needs `npm ci` in tests/node (playwright-core) and Debian's chromium at /usr/bin/chromium.
// Prints one `ok - ...` / `FAIL - ...` line per check and a closing `N passed, M failed` line;
// exits 0 only when every check passed.
import { createRequire } from 'node:module';

const require = createRequire(new URL('../node/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [adminUrlArg, deadId, screenshotPath] = process.argv.slice(2);
if (!adminUrlArg || !deadId) {
  console.error('usage: node tests/browser/status_page_test.mjs ADMIN_URL DEAD_RECORD_ID [SCREENSHOT.png]');
  process.exit(2);
}
const base = adminUrlArg.replace(/\/+$/, '');
const adminOrigin = new URL(base + '/').origin;
const token = process.env.ADMIN_TOKEN ?? '';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

let passed = 0;
let failed = 0;
function check(ok, what, detail) {
  if (ok) { passed += 1; console.log(`ok - ${what}`); }
  else { failed += 1; console.log(`FAIL - ${what}${detail ? `: ${detail}` : ''}`); }
  return ok;
}

// Polls fn until it returns a truthy value or timeoutMs passes; returns the last value.
async function poll(fn, timeoutMs, intervalMs = 250) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    let v;
    try { v = await fn(); } catch { v = undefined; }
    if (v || Date.now() >= end) return v;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

// A CSS string literal for an attribute selector (record ids are untrusted text).
const cssString = (s) => `"${String(s).replace(/["\\]/g, '\\$&').replace(/\n/g, '\\a ')}"`;

const hardStop = setTimeout(() => {
  console.log('FAIL - the test finished within 120 s');
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
}, 120_000);
hardStop.unref();

const consoleErrors = [];
const foreignRequests = [];
const dialogs = [];
let sameOriginRequests = 0;

let browser;
try {
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();

  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    const text = msg.text();
    // With a token configured, the first API calls are answered 401 before the token is entered;
    // Chromium logs each such response as a console error. Those, and only those, are expected.
    if (token && /status of 401/.test(text)) return;
    consoleErrors.push(text);
  });
  page.on('pageerror', (err) => consoleErrors.push(`uncaught: ${err.message}`));
  page.on('dialog', (d) => { dialogs.push(`${d.type()}: ${d.message()}`); d.dismiss().catch(() => {}); });
  page.on('request', (req) => {
    const url = req.url();
    const scheme = url.slice(0, url.indexOf(':') + 1).toLowerCase();
    if (scheme === 'data:' || scheme === 'blob:' || scheme === 'about:') return; // inline, no host
    let origin = '';
    try { origin = new URL(url).origin; } catch { /* unparsable: counted as foreign */ }
    if (origin === adminOrigin) sameOriginRequests += 1;
    else foreignRequests.push(url);
  });

  const response = await page.goto(base + '/', { waitUntil: 'load', timeout: 15_000 });
  check(response && response.status() === 200, 'the page loads with HTTP 200', response ? `HTTP ${response.status()}` : 'no response');
  const title = await page.title();
  check(/migraine-connector/i.test(title), 'the page title names migraine-connector', JSON.stringify(title));

  if (token) {
    const form = page.locator('[data-testid="token-form"]');
    const shown = await poll(() => form.isVisible(), 10_000);
    check(shown, 'the page asks for the admin token');
    if (shown) {
      await page.locator('[data-testid="token-input"]').fill(token);
      await page.locator('[data-testid="token-submit"]').click();
      const hidden = await poll(async () => !(await form.isVisible()), 10_000);
      check(hidden, 'the admin token is accepted');
    }
  }

  if (!token) {
    await page.waitForTimeout(1000);
    check(!(await page.locator('[data-testid="token-form"]').isVisible()),
      'the page does not ask for an admin token', 'the admin server wants one: set ADMIN_TOKEN');
  }

  const counts = await poll(async () => {
    const texts = await page.locator('[data-testid="queue"] [data-testid="queue-count"]').allTextContents();
    return texts.length > 0 && texts.every((t) => /^\d+$/.test(t.trim())) ? texts : undefined;
  }, 15_000);
  check(Boolean(counts), 'the queue section shows numbers', counts ? '' : 'queue counts are not all numbers');
  if (counts) console.log(`# queue counts: ${counts.join(' ')}`);

  const oldest = (await page.locator('[data-testid="oldest-pending"]').textContent())?.trim() ?? '';
  check(oldest !== '' && oldest !== '–', 'the queue section shows the oldest pending age', JSON.stringify(oldest));

  const procs = (await page.locator('[data-testid="processes"]').textContent())?.trim() ?? '';
  check(/daemon pid \d+( on [\w.-]+)? \(\d+ in flight, leads the alerts\) — this one/.test(procs),
    'the page names the process delivering, what it leads, and that it is the one answering', JSON.stringify(procs));
  const store = (await page.locator('[data-testid="store-state"]').textContent())?.trim() ?? '';
  check(store === 'taking writes', 'the page says the store takes writes', JSON.stringify(store));

  // The write strategy as the admin API has it: the mode, and each type left out with its reason.
  const write = await page.evaluate(async (t) => {
    const r = await fetch('api/status', { headers: t ? { authorization: `Bearer ${t}` } : {} });
    return (await r.json()).write;
  }, token);
  if (write && write.mode) {
    check(await page.locator('[data-testid="write-mode"]').getAttribute('data-mode') === write.mode,
      `the page shows the write mode in force (${write.mode})`);
    const leftOut = (write.types || []).filter((t) => !t.sent);
    const rows = await page.locator('[data-testid="write-types"] tr[data-sent="no"]').allTextContents();
    check(rows.length === leftOut.length && leftOut.every((t, i) => rows[i].includes(t.type) && rows[i].includes(t.why)),
      `the page names each type left out and why (${leftOut.length})`, JSON.stringify(rows));
    check((await page.locator('[data-testid="write-types"] tr').count()) === (write.types || []).length,
      'the page lists every type the connector writes');
  } else {
    check(/not read yet|capabilities unread/.test(await page.locator('[data-testid="write-mode"]').innerText()),
      'the page says the write strategy is not read yet');
  }

  const health = await page.locator('[data-testid="health-badge"]').getAttribute('data-health');
  check(['ok', 'attention', 'problem'].includes(health), 'the header shows an overall health', JSON.stringify(health));

  check(!(await page.locator('[data-testid="error-banner"]').isVisible()), 'no API error banner is shown');

  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(overflow <= 0, 'no horizontal scroll at 1366x768', `${overflow}px too wide`);

  const row = page.locator(`[data-testid="dead-letter"][data-record-id=${cssString(deadId)}]`);
  const found = await poll(async () => (await row.count()) === 1, 15_000);
  check(found, `the dead-letters table lists ${deadId}`);

  if (found) {
    const reason = ((await row.locator('[data-testid="dead-reason"]').innerText()) ?? '').replace(/\s+/g, ' ').trim();
    check(reason.length > 0 && reason !== '(no error recorded)', `the dead letter for ${deadId} shows its reason`, JSON.stringify(reason));
    if (reason) console.log(`# reason: ${reason}`);

    await row.locator('[data-testid="replay-reason"]').fill(`browser test replay ${new Date().toISOString()}`);
    await row.locator('[data-testid="replay-button"]').click();

    const eventRow = page.locator(`[data-testid="event"][data-event="replayed"][data-record-id=${cssString(deadId)}]`);
    const t0 = Date.now();
    const done = await poll(async () => (await row.count()) === 0 && (await eventRow.count()) > 0, 30_000);
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    const detail = done ? '' : `after 30 s: dead-letter rows ${await row.count()}, replayed events ${await eventRow.count()}, ` +
      `row result ${JSON.stringify(await row.locator('[data-testid="replay-result"]').textContent().catch(() => null))}`;
    check(done, `after Replay, ${deadId} left the dead letters and a replayed event is listed (${secs} s)`, detail);

    const log = (await page.locator('[data-testid="replay-log"]').textContent()) ?? '';
    check(log.includes(deadId) && /Replayed/.test(log), 'the page reports the replay result', JSON.stringify(log.slice(0, 200)));
  }

  // --- The last 24 hours: the charts drawn from /api/series, as the page fetched it ---
  const fetchSeries = () => page.evaluate(async () => {
    const t = sessionStorage.getItem('migraine-connector.admin-token');
    const r = await fetch('api/series?width=3600', { headers: t ? { Authorization: `Bearer ${t}` } : {}, cache: 'no-store' });
    return r.ok ? r.json() : { error: r.status };
  });
  // What the page drew, and whether it matches the series; polled, since both move while records are delivered.
  const chartState = async () => {
    const series = await fetchSeries();
    const drawn = await page.evaluate(() => {
      const out = {};
      for (const fig of document.querySelectorAll('[data-testid="chart"]')) {
        const key = fig.getAttribute('data-series');
        const bars = [...fig.querySelectorAll('[data-testid="bar"]')];
        const svg = fig.querySelector('[data-testid="chart-svg"]');
        out[key] = {
          bars: bars.length, sum: bars.reduce((a, b) => a + Number(b.getAttribute('data-value')), 0),
          titles: bars.map((b) => b.querySelector('title')?.textContent ?? ''),
          values: bars.map((b) => Number(b.getAttribute('data-value'))),
          points: fig.querySelectorAll('[data-testid="point"]').length,
          noData: fig.querySelectorAll('[data-testid="no-data"]').length,
          role: svg?.getAttribute('role') ?? '', label: svg?.getAttribute('aria-label') ?? '',
          right: svg ? svg.getBoundingClientRect().right : Infinity,
        };
      }
      const p95 = document.querySelector('[data-testid="latency-p95"]');
      out.p95 = { text: p95?.textContent.trim() ?? '', ms: p95?.getAttribute('data-ms') ?? '' };
      out.rows = document.querySelectorAll('[data-testid="series-row"]').length;
      out.width = document.documentElement.clientWidth;
      return out;
    });
    const withAny = (a) => a.filter((v) => v > 0).length;
    const sum = (a) => a.reduce((x, y) => x + y, 0);
    const matches = !series.error && ['delivered', 'retries', 'dead_lettered'].every((k) =>
      drawn[k] && drawn[k].bars === withAny(series[k]) && drawn[k].sum === sum(series[k])) &&
      drawn.latency && drawn.latency.points === series.latency_p95_ms.filter((v) => v !== null).length &&
      drawn.p95.ms === String(series.total.latency_p95_ms ?? '');
    return { series, drawn, matches };
  };
  const charts = await poll(async () => {
    const c = await chartState();
    return c.matches && c.series.total.delivered > 0 && c.series.total.latency_p95_ms !== null ? c : undefined;
  }, 20_000, 500) ?? await chartState().catch((e) => ({ series: { error: String(e) }, drawn: {}, matches: false }));
  const { series, drawn } = charts;
  const summary = (k) => series.error ? `/api/series: ${series.error}` :
    `${k}: ${drawn[k]?.bars} bars summing to ${drawn[k]?.sum}; /api/series has ${series[k]?.filter((v) => v > 0).length} hours ` +
    `with any, ${series[k]?.reduce((a, b) => a + b, 0)} in all`;
  check(!series.error && series.width_s === 3600 && series.delivered.length === 24,
    '/api/series answers 24 hourly bins', series.error ? `/api/series: ${series.error}` : JSON.stringify(series).slice(0, 200));
  check(!series.error && series.total.delivered > 0 && drawn.delivered?.bars > 0,
    `the delivered chart has bars (${drawn.delivered?.bars} hours with deliveries)`, summary('delivered'));
  for (const k of ['delivered', 'retries', 'dead_lettered']) {
    check(!series.error && drawn[k]?.bars === series[k].filter((v) => v > 0).length && drawn[k]?.sum === series[k].reduce((a, b) => a + b, 0),
      `the ${k} chart draws one bar per hour with any, as /api/series counts them`, summary(k));
  }
  const firstTitle = drawn.delivered?.titles[0] ?? '';
  check(/^\d\d:\d\d–\d\d:\d\dZ?: \d+ delivered$/.test(firstTitle) && firstTitle.endsWith(`: ${drawn.delivered.values[0]} delivered`),
    'a delivered bar says its hour and count when hovered', JSON.stringify(firstTitle));
  const p95Points = series.error ? -1 : series.latency_p95_ms.filter((v) => v !== null).length;
  check(p95Points > 0 && drawn.latency?.points === p95Points,
    `the latency chart has a p95 point for each hour with a measured delivery (${p95Points})`,
    `drawn ${drawn.latency?.points}, p95 values ${JSON.stringify(series.latency_p95_ms)}`);
  check(/^p95 ≤ \d+(\.\d)? (ms|s|min|h|d)$/.test(drawn.p95?.text ?? '') && drawn.p95.ms === String(series.total?.latency_p95_ms),
    `the latency chart's p95 label gives the day's p95 (${drawn.p95?.text})`,
    `label ${JSON.stringify(drawn.p95)}, total p95 ${series.total?.latency_p95_ms}`);
  if (process.env.EXPECT_P95_LABEL) {
    check(drawn.p95?.text === process.env.EXPECT_P95_LABEL, `the p95 label reads ${JSON.stringify(process.env.EXPECT_P95_LABEL)}`,
      JSON.stringify(drawn.p95?.text));
  }
  const keys = ['delivered', 'retries', 'dead_lettered', 'latency'];
  check(keys.every((k) => drawn[k]?.role === 'img' && drawn[k].label.length > 20),
    'each chart is an image with a description for screen readers', keys.map((k) => `${k}: ${JSON.stringify(drawn[k]?.label)}`).join(' | '));
  check(!series.error && drawn.delivered?.label.includes(`${series.total.delivered} in all`),
    "the delivered chart's description gives the day's total", JSON.stringify(drawn.delivered?.label));
  if (!series.error && new Date(series.since) > new Date(series.from)) {
    const since = ((await page.locator('[data-testid="series-since"]').textContent()) ?? '').trim();
    check(/since the daemon started/.test(since) && await page.locator('[data-testid="series-since"]').isVisible(),
      'the charts say they cover only the time since the daemon started', JSON.stringify(since));
    check(keys.every((k) => drawn[k]?.noData === 1), 'each chart shades the hours before the start',
      keys.map((k) => `${k}: ${drawn[k]?.noData}`).join(', '));
  }
  const hoursWithAny = series.error ? -1 : series.delivered.filter((_, i) =>
    series.delivered[i] || series.retries[i] || series.dead_lettered[i]).length;
  check(drawn.rows === hoursWithAny, `the figures table has a row per hour with any figure (${hoursWithAny})`, `${drawn.rows} rows`);
  check(keys.every((k) => drawn[k]?.right <= drawn.width), 'the charts fit the 1366x768 window',
    keys.map((k) => `${k} right edge ${drawn[k]?.right}`).join(', ') + ` of ${drawn.width}`);
  const overflowAfter = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(overflowAfter <= 0, 'with the charts drawn, still no horizontal scroll at 1366x768', `${overflowAfter}px too wide`);
  if (process.env.VIEWPORT_SCREENSHOT) {
    await page.screenshot({ path: process.env.VIEWPORT_SCREENSHOT });
    console.log(`# viewport screenshot: ${process.env.VIEWPORT_SCREENSHOT}`);
  }

  const updated = ((await page.locator('[data-testid="last-updated"]').textContent()) ?? '').trim();
  check(/^last updated /.test(updated), 'the page shows when it was last updated', JSON.stringify(updated));

  if (screenshotPath) {
    await page.screenshot({ path: screenshotPath, fullPage: true });
    console.log(`# screenshot: ${screenshotPath}`);
  }

  check(dialogs.length === 0, 'the page opened no dialog', dialogs.join(' | '));
  check(consoleErrors.length === 0, 'the browser console logged no error', consoleErrors.join(' | '));
  check(sameOriginRequests > 0 && foreignRequests.length === 0,
    `every request the page made went to ${adminOrigin} (${sameOriginRequests} requests)`,
    foreignRequests.length ? foreignRequests.slice(0, 5).join(' ') : 'no request seen');
} catch (err) {
  check(false, 'the test ran to its end', err && err.stack ? err.stack.split('\n').slice(0, 3).join(' / ') : String(err));
} finally {
  if (browser) await browser.close().catch(() => {});
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
