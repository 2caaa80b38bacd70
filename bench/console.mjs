#!/usr/bin/env node
// The browser half of bench/console (issue 17): Debian's Chromium, driven by
// playwright-core (as tests/browser), against an armadad that bench/console
// brought up with a large estate. Measures login to a usable console (the
// host-group tree drawn and the first page of the selected group listed),
// switching groups, the longest main-thread task (PerformanceObserver
// 'longtask') and the requests the open console makes while nothing
// changes. Prints "IDLE START" and "IDLE END" around the idle window (the
// driver measures armadad's CPU meanwhile) and, last, one line of JSON.
//
//   node bench/console.mjs --url URL --user NAME --password PW [--idle-s 45] [--groups Site3:h0300,...]
// (each group to switch to, with the name of its first host)
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const opt = (name, def) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : def; };
const URL_ = opt('--url');
const IDLE_S = +opt('--idle-s', '45');
const GROUPS = opt('--groups', 'Site3:h0300,Site7:h0700,Site1:h0100,Site9:h0900,Site5:h0500').split(',').map(x => x.split(':'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const sleep = ms => new Promise(r => setTimeout(r, ms));

const browser = await chromium.launch({
  executablePath: CHROMIUM, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-default-apps', '--disable-extensions'],
});
const out = {};
try {
  const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  await ctx.addInitScript(() => {
    window.__longtasks = [];
    try {
      new PerformanceObserver(l => { for (const e of l.getEntries()) window.__longtasks.push(e.duration); })
        .observe({ type: 'longtask', buffered: true });
    } catch (e) { window.__longtasks = null; }
  });
  const page = await ctx.newPage();
  const reqs = [];
  page.on('request', q => reqs.push({ at: Date.now(), url: q.url() }));
  // When each API answer was complete: how much of a switch is armadad.
  const done = [];
  page.on('requestfinished', q => { if (new URL(q.url()).pathname.startsWith('/api/')) done.push({ at: Date.now(), path: new URL(q.url()).pathname }); });
  await page.goto(URL_ + '/');
  await page.fill('form.login input[name=name]', opt('--user'));
  await page.fill('form.login input[name=password]', opt('--password'));
  // Login to usable: the tree with its groups, the first page of VMs.
  const t0 = Date.now();
  // How much of it is the login request itself (the password hash).
  const sessionDone = page.waitForResponse(r => new URL(r.url()).pathname === '/api/v1/sessions' && r.request().method() === 'POST',
    { timeout: 120000 }).then(() => Date.now() - t0);
  await page.click('form.login button[type=submit]');
  await page.waitForFunction(() => document.querySelectorAll('.tree-node').length > 1 &&
    document.querySelectorAll('.vm-card').length > 0 && document.querySelectorAll('tr.host-row').length > 0, null, { timeout: 120000 });
  out.login_ms = Date.now() - t0;
  out.session_ms = await sessionDone;
  await page.waitForSelector('.live-state[data-state="live"]', { timeout: 30000 });
  await sleep(2000);
  // Group switches: until the first card and the first host row are the
  // group's (its first host's name, in name order).
  out.switch_ms = [];
  out.switch_answers_ms = [];
  for (const [g, prefix] of GROUPS) {
    const s = Date.now();
    const d0 = done.length;
    await page.click(`.tree-node:has-text("${g} ")`);
    await page.waitForFunction(p => {
      const c = document.querySelector('.vm-card');
      const hr = document.querySelector('tr.host-row');
      return c && c.dataset.name.startsWith(p) && hr && hr.dataset.name.startsWith(p);
    }, prefix, { timeout: 60000 });
    out.switch_ms.push(Date.now() - s);
    // The last answer of the lists and counts the switch asked for.
    const answers = done.slice(d0).filter(x => /\/(vms|hosts|summary)$/.test(x.path));
    out.switch_answers_ms.push(answers.length ? Math.max(...answers.map(x => x.at)) - s : null);
    await sleep(1000);
  }
  // Back to the whole estate, then nothing changes: requests per second.
  await page.click('.tree-node[data-group-id="1"]');
  await page.waitForFunction(() => document.querySelector('.vm-card')?.dataset.name.startsWith('h0000'), null, { timeout: 60000 });
  await sleep(5000);
  console.log('IDLE START');
  const i0 = Date.now(), n0 = reqs.length;
  await sleep(IDLE_S * 1000);
  const idle = reqs.slice(n0);
  console.log('IDLE END');
  out.idle_s = (Date.now() - i0) / 1000;
  out.idle_requests = idle.length;
  out.idle_rps = idle.length / out.idle_s;
  const kinds = {};
  for (const r of idle) { const p = new URL(r.url).pathname.replace(/\/\d+/g, '/ID'); kinds[p] = (kinds[p] || 0) + 1; }
  out.idle_by_path = kinds;
  const lt = await page.evaluate(() => window.__longtasks);
  out.longtask_supported = lt !== null;
  out.longest_task_ms = lt && lt.length ? Math.max(...lt) : 0;
  out.long_tasks = lt ? lt.length : null;
  out.cards_in_dom = await page.$$eval('.vm-card', c => c.length);
  out.dom_nodes = await page.evaluate(() => document.getElementsByTagName('*').length);
  await ctx.close();
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
