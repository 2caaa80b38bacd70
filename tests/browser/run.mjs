#!/usr/bin/env node
// Browser tests of the web console: Debian's Chromium driven by
// playwright-core against a real armadad (a free loopback port, a temporary
// state directory, libvirt's test driver as hosts). Prints one closing line
// "N passed, N failed" (", N skipped"); exits non-zero when anything failed.
// A test also fails when any page logged a script or console error, or got
// an HTTP error response (>= 400), while it ran, unless the test provokes
// that response on purpose and says so with allowHttp().
//
//   node tests/browser/run.mjs [--build DIR] [--only NAME]
//
// Screenshots of the main pages go to tests/browser/screenshots/.
import { spawn, execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeVnc } from './fake-vnc.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const SHOTS = path.join(HERE, 'screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const args = process.argv.slice(2);
const opt = name => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : null; };
const BUILD = path.resolve(ROOT, opt('--build') || process.env.ARMADA_BUILD || 'build-check');
const ONLY = opt('--only');
const ARMADAD = path.join(BUILD, 'src', 'daemon', 'armadad');

function skipAll(why) {
  console.log(`browser suite skipped: ${why}`);
  console.log('0 passed, 0 failed, 1 skipped');
  process.exit(0);
}

if (!fs.existsSync(CHROMIUM)) skipAll(`${CHROMIUM} is not installed (Debian package chromium)`);
if (!fs.existsSync(ARMADAD)) skipAll(`${ARMADAD} is not built`);
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (e) {
  skipAll('playwright-core is not installed (run scripts/bootstrap, which runs npm ci)');
}
if (!fs.existsSync(path.join(ROOT, 'node_modules', '@novnc', 'novnc', 'core', 'rfb.js'))) skipAll('node_modules/@novnc/novnc is missing (npm ci)');

/* ------------------------------------------------------------------ */
/* armadad */

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
    s.on('error', reject);
  });
}

const sleep = ms => new Promise(r => setTimeout(r, ms));

async function waitFor(pred, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

// Every armadad a test started: the suite stops whichever is still running
// at its end (a test that failed before its own stop, or a shared one whose
// last user was left out by --only).
const DAEMONS = [];

class Armadad {
  constructor(extra = []) { this.extra = extra; }

  async start() {
    DAEMONS.push(this);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'armada-browser-'));
    this.port = await freePort();
    this.url = `http://127.0.0.1:${this.port}`;
    const log = fs.openSync(path.join(this.dir, 'armadad.log'), 'a');
    this.proc = spawn(ARMADAD, ['--state-dir', path.join(this.dir, 'var'), '--listen', `127.0.0.1:${this.port}`,
      '--web-dir', path.join(ROOT, 'web'), '--refresh-interval-ms', '500', '--stop-timeout-s', '3', '--allow-test-hosts', ...this.extra],
    { stdio: ['ignore', log, log], cwd: this.dir, env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=0' } });
    this.exited = null;
    this.proc.on('exit', code => { this.exited = code; });
    await waitFor(async () => {
      if (this.exited !== null) throw new Error(`armadad exited with ${this.exited}: ${this.log().slice(-2000)}`);
      try { return (await fetch(this.url + '/api/v1/version')).ok; } catch (e) { return false; }
    }, 20000, 'armadad to answer');
    const [name, pw] = fs.readFileSync(path.join(this.dir, 'var', 'initial-admin-password'), 'utf8').trim().split(/\s+/);
    this.admin = { name, password: pw };
    this.token = (await this.req('POST', '/sessions', { name, password: pw }, null)).token;
    return this;
  }

  log() { try { return fs.readFileSync(path.join(this.dir, 'armadad.log'), 'utf8'); } catch (e) { return ''; } }

  async req(method, p, body, token = this.token) {
    const headers = {};
    if (token) headers.Authorization = 'Bearer ' + token;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(this.url + '/api/v1' + p, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await r.text();
    const data = text && (r.headers.get('Content-Type') || '').startsWith('application/json') ? JSON.parse(text) : text;
    if (!r.ok) throw new Error(`${method} ${p} -> ${r.status} ${text.slice(0, 300)}`);
    return data;
  }

  async job(id) {
    return waitFor(async () => { const j = await this.req('GET', `/jobs/${id}`); return ['queued', 'running'].includes(j.state) ? null : j; }, 30000, `job ${id}`);
  }

  async stop() {
    if (this.proc && this.exited === null) {
      this.proc.kill('SIGTERM');
      await waitFor(() => this.exited !== null, 15000, 'armadad to stop').catch(() => this.proc.kill('SIGKILL'));
    }
    this.finalLog = this.log();
    if (this.dir && !process.env.KEEP) fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/* ------------------------------------------------------------------ */
/* the tiny test runner */

const tests = [];
const sanitizerErrors = log => log.split('\n').filter(l => /AddressSanitizer|runtime error:|UndefinedBehaviorSanitizer/.test(l) && !/LeakSanitizer/.test(l));
const test = (name, fn) => tests.push({ name, fn });
function assert(cond, msg) { if (!cond) throw new Error(msg); }
class Skip extends Error {}

let browser;
// Every Content-Security-Policy violation of any page, in any test: the
// suite fails at the end when there is one (armadad's policy must let the
// console work).
const cspViolations = [];
const pages = [];   // every page opened, closed or not: checked after each test

// An HTTP error a test provokes on purpose on page: status on a path
// matching pathRe, and why. Anything else >= 400 fails the test.
function allowHttp(page, status, pathRe, why) {
  assert(why, 'allowHttp needs a reason');
  page.allowed.push({ status, pathRe, why });
}
const httpAllowed = (page, status, pathname) => page.allowed.some(a => a.status === status && a.pathRe.test(pathname));

async function newPage(viewport = { width: 1280, height: 800 }) {
  const ctx = await browser.newContext({ viewport, acceptDownloads: false });
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', e =>
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'} in ${e.sourceFile || document.URL}`));
  });
  const page = await ctx.newPage();
  page.errors = [];
  page.on('console', m => { if (/CSP violation|Content Security Policy/.test(m.text())) cspViolations.push(m.text()); });
  page.allowed = [];
  pages.push(page);
  page.on('pageerror', e => page.errors.push('script error: ' + String(e)));
  page.on('response', r => {
    if (r.status() < 400) return;
    const u = new URL(r.url());
    if (!httpAllowed(page, r.status(), u.pathname)) page.errors.push(`HTTP ${r.status()} for ${r.request().method()} ${u.pathname}${u.search}`);
  });
  page.on('console', m => {
    if (m.type() !== 'error') return;
    // Chromium logs each failed response as "Failed to load resource: the
    // server responded with a status of N": judged like the response.
    // (EventSource says "EventSource's response has a status N that is not 200".)
    const st = /status (?:of )?(\d+)/.exec(m.text());
    const url = m.location()?.url;
    if (st && url && httpAllowed(page, +st[1], new URL(url).pathname)) return;
    page.errors.push(`console error: ${m.text()}${url ? ` (${url})` : ''}`);
  });
  return page;
}

// The errors every page collected since the last call (and forgets them).
function takePageErrors() {
  const all = [];
  for (const p of pages) { all.push(...p.errors); p.errors = []; }
  return all;
}

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, name + '.png') });
}

async function loginAs(page, url, name, password) {
  await page.goto(url + '/');
  await page.fill('form.login input[name=name]', name);
  await page.fill('form.login input[name=password]', password);
  await page.click('form.login button[type=submit]');
  await page.waitForSelector('.topbar .whoami', { timeout: 10000 });
}

const card = name => `.vm-card[data-name="${name}"]`;

async function rightClickAction(page, name, action, shotName) {
  await page.click(card(name), { button: 'right' });
  await page.waitForSelector('.menu');
  if (shotName) await shot(page, shotName);
  await page.click(`.menu .menu-item[data-action="${action}"]:not([disabled])`);
}

/* ------------------------------------------------------------------ */
/* the tests (in order: they share one armadad) */

let A;            // armadad with two test-driver hosts and a legacy host with a VNC VM
let vnc;          // the fake VNC server
const SHARED = {};

test('login page: wrong password is refused with a sentence', async () => {
  const page = await newPage();
  allowHttp(page, 401, /^\/api\/v1\/sessions$/, 'the wrong password is refused');
  const resp = await page.goto(A.url + '/');
  const csp = resp.headers()['content-security-policy'] || '';
  assert(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), 'the console page has a strict Content-Security-Policy: ' + csp);
  await page.waitForSelector('form.login');
  await shot(page, '01-login');
  await page.fill('input[name=name]', A.admin.name);
  await page.fill('input[name=password]', 'not-the-password');
  await page.click('button[type=submit]');
  await page.waitForFunction(() => document.querySelector('form.login .error')?.textContent.includes('Wrong user name or password'));
  await page.context().close();
});

test('administrator console: group tree, hosts, discovered VM with a live thumbnail', async () => {
  const page = await newPage();
  SHARED.admin = page;
  await loginAs(page, A.url, A.admin.name, A.admin.password);
  await page.waitForSelector('.tree-node[data-group-id="1"]');
  await page.waitForFunction(() => [...document.querySelectorAll('.tree-node')].some(b => b.textContent.includes('Production')));
  await page.waitForSelector('tr.host-row[data-name="seattle1"][data-state="ok"]');
  await page.waitForSelector(`${card('legacy01')}[data-state="running"] img.thumb[data-live="1"]`, { timeout: 15000 });
  // Selecting Seattle > Production shows only its host.
  await page.click('.tree-node:has-text("Production")');
  await page.waitForFunction(() => document.querySelectorAll('tr.host-row').length === 1 && document.querySelector('tr.host-row').dataset.name === 'seattle1');
  await page.click('.tree-node[data-group-id="1"]');
  await page.waitForFunction(() => document.querySelectorAll('tr.host-row').length === 4);
  assert(page.errors.length === 0, 'page errors: ' + page.errors.join('; '));
});

test('New VM wizard: name, hardware, host list or ratings, create', async () => {
  const page = SHARED.admin;
  await page.click('#new-vm');
  await page.waitForSelector('form.wizard input[name=name]');
  await page.fill('form.wizard input[name=name]', 'web01');
  await page.click('form.wizard button[type=submit]');
  await page.fill('form.wizard input[name=cpus]', '2');
  await page.fill('form.wizard input[name=memory]', '256');
  await page.fill('form.wizard input[name=disk]', '0');
  await page.uncheck('form.wizard input[name=start]');
  await page.click('form.wizard button[type=submit]');
  await page.waitForSelector('form.wizard .hostpick .hostopt');
  await shot(page, '04-wizard-placement');
  await page.click('form.wizard .hostopt:has-text("seattle1") input');
  await page.click('form.wizard button[type=submit]');
  await page.waitForSelector('form.wizard', { state: 'detached' });
  await page.waitForSelector(`${card('web01')}[data-state="stopped"]`, { timeout: 15000 });
  await page.waitForSelector('li.job[data-kind="vm.create"][data-target="web01"][data-state="succeeded"]', { timeout: 15000 });
  const vm = (await A.req('GET', '/vms?name=web01')).items[0];
  assert(vm.cpus === 2 && vm.memory_mib === 256 && vm.host_name === 'seattle1', 'the VM has the wizard\'s hardware and host: ' + JSON.stringify(vm));
  assert(await page.getAttribute(`${card('web01')} img.thumb`, 'data-live') === '0', 'a stopped VM shows no picture');
});

test('New VM wizard: "Let Armada choose" places the VM on a rated host', async () => {
  const page = SHARED.admin;
  await page.click('#new-vm');
  await page.fill('form.wizard input[name=name]', 'auto01');
  await page.click('form.wizard button[type=submit]');
  await page.fill('form.wizard input[name=memory]', '128');
  await page.fill('form.wizard input[name=disk]', '0');
  await page.uncheck('form.wizard input[name=start]');
  await page.click('form.wizard button[type=submit]');
  await page.waitForSelector('form.wizard .hostpick .hostopt');
  const auto = await page.$('form.wizard .hostopt.auto input');
  if (!auto) {
    await page.click('form.wizard button:has-text("Cancel")');
    throw new Skip('the server has no placement ratings (plain host list)');
  }
  const reasons = await page.$$eval('form.wizard .hostopt .reason', els => els.map(e => e.textContent));
  assert(reasons.every(r => r.length > 10), 'every zero-rated host says why: ' + reasons.join(' | '));
  await auto.check();
  await page.click('form.wizard button[type=submit]');
  await page.waitForSelector('form.wizard', { state: 'detached' });
  await page.waitForSelector(`${card('auto01')}[data-state="stopped"]`, { timeout: 15000 });
  const vm = (await A.req('GET', '/vms?name=auto01')).items[0];
  assert(vm.host_name, 'Armada chose a host: ' + JSON.stringify(vm));
  // Delete asks first; the VM then goes away with its job.
  page.once('dialog', d => d.accept());
  await rightClickAction(page, 'auto01', 'delete');
  await page.waitForSelector('li.job[data-kind="vm.delete"][data-target="auto01"][data-state="succeeded"]', { timeout: 15000 });
  await page.waitForSelector(card('auto01'), { state: 'detached', timeout: 10000 });
});

test('context menu: start shows the guest screen, the job finishes; shut down blanks it', async () => {
  const page = SHARED.admin;
  await rightClickAction(page, 'web01', 'start', '02-context-menu');
  await page.waitForSelector('li.job[data-kind="vm.start"][data-target="web01"][data-state="succeeded"]', { timeout: 15000 });
  await page.waitForSelector(`${card('web01')}[data-state="running"] img.thumb[data-live="1"]`, { timeout: 15000 });
  const w = await page.$eval(`${card('web01')} img.thumb`, img => img.naturalWidth);
  assert(w === 160, `the thumbnail is 160 px wide (${w})`);
  await page.click(card('web01'));
  await page.waitForSelector('.actionbar button[data-action="stop"]:not([disabled])');
  await page.waitForSelector('.details h3');
  await shot(page, '03-console-admin');
  await rightClickAction(page, 'web01', 'stop');
  await page.waitForSelector('li.job[data-kind="vm.stop"][data-target="web01"][data-state="succeeded"]', { timeout: 20000 });
  await page.waitForSelector(`${card('web01')}[data-state="stopped"] img.thumb[data-live="0"]`, { state: 'attached', timeout: 15000 });
  // The action bar acts on the selection too.
  await page.click('.actionbar button[data-action="start"]');
  await page.waitForSelector(`${card('web01')}[data-state="running"]`, { timeout: 15000 });
});

test('VM details: take, revert to and delete a snapshot', async () => {
  const page = SHARED.admin;
  await page.click(card('web01'));
  await page.waitForSelector('.details .snapshots h4:has-text("Snapshots (0)")', { timeout: 10000 });
  page.once('dialog', d => d.accept('before-change'));
  await page.click('.details #snap-create');
  await page.waitForSelector('li.job[data-kind="vm.snapshot-create"][data-target="web01"][data-state="succeeded"]', { timeout: 15000 });
  await page.waitForSelector('.details li.snapshot[data-name="before-change"]', { timeout: 15000 });
  assert(/memory \+ disks/.test(await page.textContent('.details li.snapshot[data-name="before-change"]')), 'a running VM\'s snapshot has its memory');
  await shot(page, '05-snapshots');
  page.once('dialog', d => d.accept());
  await page.click('.details li.snapshot[data-name="before-change"] button[data-action="revert"]');
  await page.waitForSelector('li.job[data-kind="vm.snapshot-revert"][data-target="web01"][data-state="succeeded"]', { timeout: 15000 });
  page.once('dialog', d => d.accept());
  await page.click('.details li.snapshot[data-name="before-change"] button[data-action="delete"]');
  await page.waitForSelector('li.job[data-kind="vm.snapshot-delete"][data-target="web01"][data-state="succeeded"]', { timeout: 15000 });
  await page.waitForSelector('.details li.snapshot[data-name="before-change"]', { state: 'detached', timeout: 15000 });
  assert((await A.req('GET', '/vms?name=web01')).items[0].snapshots === 0, 'the VM has no snapshot left');
  // The VM stayed on the page and selected through it all (a snapshot job is no VM coming or going).
  assert(!(await page.$eval('.details', d => d.hidden)), 'the details panel still shows web01');
  await page.waitForSelector(card('web01'));
});

// A recovery point of web01 written by tests/unit/mkpoint (as a backup
// writes one) into a directory then adopted as a datastore, whose job
// indexes it: the test driver has no backup API.
test('Backups view: a datastore with its usage and verify, the points; the VM panel; "Back up now" fails clearly', async () => {
  const page = SHARED.admin;
  const mkpoint = path.join(BUILD, 'tests', 'unit', 'mkpoint');
  if (!fs.existsSync(mkpoint)) throw new Skip(`${mkpoint} is not built`);
  const vm = (await A.req('GET', '/vms?name=web01')).items[0];
  const pid = new Date(Date.now() - 3600e3).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const dsPath = path.join(SHARED.backupRoot, 'bds');
  const img = path.join(SHARED.backupRoot, 'web01-vda.raw');
  fs.writeFileSync(img, Buffer.alloc(2 << 20, 0x5a));
  execFileSync(mkpoint, [dsPath, vm.uuid, pid, 'vda=' + img, '--name', 'web01'], { env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0' } });
  const r = await A.req('POST', '/datastores', { name: 'bds', path: dsPath });
  assert((await A.job(r.job.id)).state === 'succeeded', 'the datastore was adopted');
  try {
    // The view: the datastore's usage (never verified yet) and the point.
    await page.click('#nav-backups');
    await page.waitForSelector('#backups-view tr.datastore-row[data-name="bds"]', { timeout: 10000 });
    assert((await page.textContent('tr.datastore-row[data-name="bds"] .ds-points')).trim() === '1', 'the datastore holds one point');
    assert(/×$/.test((await page.textContent('tr.datastore-row[data-name="bds"] .ds-dedup')).trim()), 'a dedup factor is shown');
    assert((await page.textContent('tr.datastore-row[data-name="bds"] .ds-verify')).trim() === 'never', 'not verified yet');
    await page.waitForSelector(`#backups-view tr.point-row[data-vm="web01"][data-point="${pid}"]`);
    await shot(page, '06-backups');
    // Verify is a job in the jobs pane; its result shows in the row.
    await page.click('tr.datastore-row[data-name="bds"] button[data-action="verify"]');
    await page.waitForSelector('li.job[data-kind="datastore.verify"][data-state="succeeded"]', { timeout: 20000 });
    await page.click('#backups-reload');
    await page.waitForFunction(() => /^ok/.test(document.querySelector('tr.datastore-row[data-name="bds"] .ds-verify')?.textContent || ''), null, { timeout: 10000 });

    // The VM's panel: the last good point and its list.
    await page.click('#nav-backups');
    await page.waitForSelector(card('web01'));
    await page.click(card('web01'));
    await page.waitForSelector(`.details .backups p.last-backup[data-point="${pid}"]`, { timeout: 15000 });
    assert(/verified/.test(await page.textContent('.details .backups p.last-backup')), 'the last point says it was verified');
    await page.waitForSelector(`.details .backups li.backup-point[data-point="${pid}"] button[data-action="restore"]`);
    // "Back up now": the test driver's domain has no disk to read; the job
    // fails and the panel says why (not a blank).
    await page.click('.details #backup-now');
    await page.waitForSelector('li.job[data-kind="vm.backup"][data-target="web01"][data-state="failed"]', { timeout: 20000 });
    await page.waitForSelector('.details .backups .backup-error', { timeout: 10000 });
    const why = await page.textContent('.details .backups .backup-error');
    const job = (await A.req('GET', '/jobs?limit=50')).items.find(j => j.kind === 'vm.backup');
    assert(job && job.error && why.includes(job.error), `the panel shows the job's error: '${why}' vs ${JSON.stringify(job)}`);
    assert(/web01/.test(why), 'the message names the VM: ' + why);
    await shot(page, '07-vm-backups');
  } finally {
    await A.req('DELETE', `/datastores/${r.datastore.id}?force=true`).catch(() => {});
  }
});

// File-level restore in the console: a point of web01 whose disk holds an
// ext4 file system (mkfs.ext4 -d, no mount), browsed from the Backups view
// and a file fetched through its Download link. The server boots
// libguestfs's appliance for the first listing: minutes under TCG.
test('Backups view: "Files" lists a point\'s file systems and a directory, and a file downloads', async () => {
  const page = SHARED.admin;
  const mkpoint = path.join(BUILD, 'tests', 'unit', 'mkpoint');
  if (!fs.existsSync(mkpoint)) throw new Skip(`${mkpoint} is not built`);
  const tree = path.join(SHARED.backupRoot, 'files-tree');
  fs.mkdirSync(path.join(tree, 'docs'), { recursive: true });
  fs.writeFileSync(path.join(tree, 'docs', 'hello.txt'), 'hello from the point\n');
  const img = path.join(SHARED.backupRoot, 'files-vda.raw');
  fs.writeFileSync(img, Buffer.alloc(0));
  fs.truncateSync(img, 16 << 20);
  try {
    execFileSync('mkfs.ext4', ['-q', '-F', '-d', tree, img]);
  } catch (e) {
    throw new Skip(`mkfs.ext4 -d is not available: ${e.message}`);
  }
  const vm = (await A.req('GET', '/vms?name=web01')).items[0];
  const pid = new Date(Date.now() - 7200e3).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const dsPath = path.join(SHARED.backupRoot, 'fds');
  execFileSync(mkpoint, [dsPath, vm.uuid, pid, 'vda=' + img, '--name', 'web01'], { env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0' } });
  const r = await A.req('POST', '/datastores', { name: 'fds', path: dsPath });
  assert((await A.job(r.job.id)).state === 'succeeded', 'the datastore was adopted');
  try {
    await page.click('#nav-backups');
    const row = `#backups-view tr.point-row[data-vm="web01"][data-point="${pid}"][data-datastore="fds"]`;
    await page.waitForSelector(row, { timeout: 10000 });
    await page.click(`${row} button[data-action="files"]`);
    await page.waitForSelector('#files-box .files-loading', { timeout: 5000 });
    await page.waitForSelector('#files-box table.files tr.file-row[data-name="sda"], #files-box .files-error', { timeout: 960000 });
    const err = await page.$('#files-box .files-error');
    if (err) {
      const msg = await err.textContent();
      if (/did not start/.test(msg)) throw new Skip(`libguestfs's appliance cannot start here: ${msg}`);
      throw new Error('the listing failed: ' + msg);
    }
    await page.click('#files-box tr.file-row[data-name="sda"] a.files-dir');
    await page.waitForSelector('#files-box tr.file-row[data-name="docs"][data-type="directory"]', { timeout: 120000 });
    await page.click('#files-box tr.file-row[data-name="docs"] a.files-dir');
    await page.waitForSelector('#files-box tr.file-row[data-name="hello.txt"][data-type="file"] a.files-download', { timeout: 120000 });
    await shot(page, '08-backup-files');
    const href = await page.getAttribute('#files-box tr.file-row[data-name="hello.txt"] a.files-download', 'href');
    assert(href.includes('path=%2Fsda%2Fdocs%2Fhello.txt'), 'the link names the file: ' + href);
    const got = await page.evaluate(async u => { const res = await fetch(u); return [res.status, await res.text()]; }, href);
    assert(got[0] === 200 && got[1] === 'hello from the point\n', 'the file downloads through the session cookie: ' + JSON.stringify(got));
    await page.click('#files-box .files-close');
    await page.waitForSelector('#files-box table.files', { state: 'detached', timeout: 5000 });
  } finally {
    await A.req('DELETE', `/datastores/${r.datastore.id}?force=true`).catch(() => {});
    // Back to the VMs (the button toggles the view), as the tests after
    // this one expect: they click VM cards and host rows.
    if (await page.$('#files-box .files-close')) await page.click('#files-box .files-close').catch(() => {});
    if (!(await page.isVisible(card('web01')))) await page.click('#nav-backups').catch(() => {});
    await page.waitForSelector(card('web01'), { state: 'visible', timeout: 10000 });
  }
});

// The consolidation assessment with P2V's "Convert" (issue 12): an assessed
// server is listed (no samples yet) with Convert; its form posts /p2v and
// shows the server's answer (P2V is off here: armadad has no
// --p2v-ssh-key, a 503 naming the flag).
test('Assessment view: an assessed server has "Convert", which posts /p2v and shows the answer', async () => {
  const page = SHARED.admin;
  const a = await A.req('POST', '/assessments', { name: 'phys9', node_exporter: 'http://192.0.2.9:9100' });
  allowHttp(page, 503, /\/api\/v1\/p2v$/, 'P2V is off in the browser tests (no --p2v-ssh-key)');
  try {
    await page.click('#nav-assess');
    await page.waitForSelector('#assess-view tr.assess-row[data-name="phys9"] button.p2v-convert', { timeout: 10000 });
    await page.click('tr.assess-row[data-name="phys9"] button.p2v-convert');
    await page.fill('#p2v-box .p2v-ssh', 'root@192.0.2.9');
    await page.click('#p2v-box .p2v-go');
    await page.waitForSelector('#p2v-box .p2v-msg.error', { timeout: 10000 });
    assert(/--p2v-ssh-key/.test(await page.textContent('#p2v-box .p2v-msg')), 'the server\'s sentence is shown');
    await shot(page, '08-assessment');
  } finally {
    await A.req('DELETE', `/assessments/${a.id}`).catch(() => {});
    // Back to the VMs (the link toggles the view), as the tests after this
    // one expect.
    if (await page.$('#assess-view')) await page.click('#nav-assess').catch(() => {});
    await page.waitForSelector('#assess-view', { state: 'detached', timeout: 10000 });
    await page.waitForSelector('section.vms-section', { state: 'visible', timeout: 10000 });
  }
});

test('console: noVNC through armadad\'s WebSocket shows the VM screen', async () => {
  const page = SHARED.admin;
  try {
    await consoleTest(page);
  } finally {
    if (page.url().includes('#/console/')) await page.goto(A.url + '/#/');
  }
});

async function consoleTest(page) {
  await rightClickAction(page, 'legacy01', 'console');
  await page.waitForSelector('.console-status[data-state="connected"], .console-status[data-state="error"]', { timeout: 15000 });
  const st = await page.textContent('.console-status');
  assert(await page.$('.console-status[data-state="connected"]'), 'the console connects: ' + st);
  await waitFor(() => vnc.updates > 0, 10000, 'the VNC server to send a frame');
  await sleep(500);
  const lit = await page.$eval('.console-screen canvas', c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 100) n++;
    return n;
  });
  assert(lit > 1000, `the console canvas shows the VM's picture (${lit} bright pixels)`);
  // Keys typed in the console reach the VM.
  await page.click('.console-screen canvas');
  await page.keyboard.press('a');
  await waitFor(() => vnc.keys > 0, 5000, 'a key event at the VNC server');
  await shot(page, '06-vnc-console');
  await page.click('.console-bar button:has-text("Back")');
  await page.waitForSelector('.vm-card');
}

test('console is refused without a session and for another origin', async () => {
  const vm = (await A.req('GET', '/vms?name=legacy01')).items[0];
  const key = 'dGhlIHNhbXBsZSBub25jZQ==';
  const ws = (headers) => new Promise(resolve => {
    const s = net.connect(A.port, '127.0.0.1', () => {
      s.write(`GET /api/v1/vms/${vm.id}/console HTTP/1.1\r\nHost: 127.0.0.1:${A.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${headers}\r\n`);
    });
    let buf = '';
    s.on('data', d => { buf += d; if (buf.includes('\r\n\r\n')) { s.destroy(); resolve(buf); } });
    s.on('error', () => resolve(buf));
  });
  const anon = await ws('');
  assert(/^HTTP\/1\.1 401/.test(anon), 'no session: 401, got ' + anon.split('\r\n')[0]);
  const foreign = await ws(`Authorization: Bearer ${A.token}\r\nOrigin: http://evil.example\r\n`);
  assert(/^HTTP\/1\.1 403/.test(foreign), 'foreign origin: 403, got ' + foreign.split('\r\n')[0]);
  const good = await ws(`Authorization: Bearer ${A.token}\r\n`);
  assert(/^HTTP\/1\.1 101/.test(good) && good.includes('s3pPLMBiTxaQ9kYGzzhZRbK+xOo='), 'a good handshake: 101 with the RFC 6455 accept key, got ' + good);
});

/* A real QEMU guest on a test-bed host (tests/testbed), when this machine
 * can run one: its thumbnail turns from blank into the guest's screen. */
const TESTBED = path.join(ROOT, 'tests', 'testbed', 'testbed');
function testbedWhyNot() {
  if (process.getuid() !== 0) return 'the test bed needs root';
  for (const f of [TESTBED, '/usr/sbin/libvirtd', '/usr/sbin/virtlogd', '/usr/bin/qemu-system-x86_64', '/usr/bin/tini']) {
    if (!fs.existsSync(f)) return `${f} is missing`;
  }
  return null;
}
function testbedEnv() {
  const env = { ...process.env, ARMADA_TESTBED_ID: SHARED.bedId, ARMADA_TESTBED_OWNER: String(process.pid), PATH: process.env.PATH + ':/usr/sbin:/sbin' };
  delete env.ARMADA_TESTBED_NET;
  return env;
}

// Asynchronous: bringing a bed up can take longer than armadad's idle
// timeout, and a blocked event loop would not see armadad close the
// client's idle keep-alive connection, so the next request would go out on
// a dead socket ("fetch failed").
function testbed(...a) {
  return new Promise((resolve, reject) => {
    execFile(TESTBED, a, { env: testbedEnv(), encoding: 'utf8', timeout: 150000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`testbed ${a.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

function testbedSync(...a) {
  return execFileSync(TESTBED, a, { env: testbedEnv(), encoding: 'utf8', timeout: 150000, stdio: ['ignore', 'pipe', 'pipe'] });
}

test('a real QEMU guest on a test-bed host: blank thumbnail, then its screen', async () => {
  const why = testbedWhyNot();
  if (why) throw new Skip(why);
  SHARED.bedId = `w${process.pid % 10000}`;
  SHARED.bed = true;
  const out = await testbed('up', '1');
  const line = out.split('\n').find(l => l.startsWith('h1 '));
  assert(line, 'testbed up printed h1: ' + out);
  const uri = line.split(/\s+/)[2];
  const r = await A.req('POST', '/hosts', { name: 'bed-h1', uri, group: 'Seattle/Test' });
  await A.job(r.job.id);
  // SeaBIOS with no disk under TCG writes text on the screen within a second.
  const c = await A.req('POST', '/vms', { name: 'bios01', host: 'bed-h1', cpus: 1, memory_mib: 64, domain_type: 'qemu' });
  await A.job(c.job.id);
  const page = SHARED.admin;
  await page.click('.tree-node:has-text("Test")');
  await page.waitForSelector(`${card('bios01')}[data-state="stopped"] img.thumb[data-live="0"]`, { state: 'attached', timeout: 15000 });
  await rightClickAction(page, 'bios01', 'start');
  await page.waitForSelector(`${card('bios01')}[data-state="running"] img.thumb[data-live="1"]`, { timeout: 20000 });
  // The picture changes as the firmware writes: wait until it is not one colour.
  await waitFor(async () => page.$eval(`${card('bios01')} img.thumb`, img => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 150) lit++;
    return lit > 20;
  }), 20000, 'the guest screen to show text');
  await page.click(card('bios01'));
  await shot(page, '09-qemu-guest');
  // A remote host's VM: VNC on the host's addresses with a per-VM password,
  // which the console page fetches; noVNC connects and draws the firmware.
  await rightClickAction(page, 'bios01', 'console');
  await page.waitForSelector('.console-status[data-state="connected"], .console-status[data-state="error"], .console-status[data-state="disconnected"]', { timeout: 20000 });
  const st = await page.textContent('.console-status');
  assert(await page.$('.console-status[data-state="connected"]'), 'the console of a test-bed VM connects: ' + st);
  await waitFor(async () => page.$eval('.console-screen canvas', c => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let lit = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 150) lit++;
    return lit > 20;
  }).catch(() => false), 20000, 'the console to draw the guest screen');
  await shot(page, '11-remote-console');
  await page.click('.console-bar button:has-text("Back")');
  await page.waitForSelector('.vm-card');
  const vm = (await A.req('GET', '/vms?name=bios01')).items[0];
  await A.req('POST', `/vms/${vm.id}/actions/kill`, {}).then(j => A.job(j.job.id));
  await page.click('.tree-node[data-group-id="1"]');
});

test('self-service portal: a self-service user sees only their VMs', async () => {
  await A.req('POST', '/users', { name: 'alice', password: 'alice-password-1', role: 'self-service' });
  const alice = (await A.req('GET', '/users?name=alice')).items[0];
  const vm = (await A.req('GET', '/vms?name=web01')).items[0];
  const given = await A.req('PATCH', `/vms/${vm.id}`, { owner: 'alice' });
  assert(given.owner_id === alice.id, 'the administrator gave web01 to alice');
  // A template in the library and a grant of it to alice, when the server
  // has them: the portal then shows them with the quota, and deploys.
  let granted = false;
  const probe = await fetch(`${A.url}/api/v1/grants`, { headers: { Authorization: 'Bearer ' + A.token } });
  if (probe.status !== 404) {
    const share = path.join(SHARED.nodeDir, 'share');
    fs.mkdirSync(path.join(share, 'linux'), { recursive: true });
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(share, 'linux', 'base.qcow2'), '64M']);
    const sh = await A.req('POST', '/library/shares', { path: share });
    await A.job(sh.job.id);
    await A.req('POST', '/templates', { name: 'small', image: 'linux/base.qcow2', cpus: 1, memory_mib: 64 });
    await A.req('POST', '/grants', { user: 'alice', templates: ['small'], group: 'Seattle/Production', points: 10, max_vms: 3 });
    granted = true;
  }
  const page = await newPage();
  await loginAs(page, A.url, 'alice', 'alice-password-1');
  await page.waitForSelector(card('web01'));
  await page.waitForSelector('.topbar .portal:has-text("Self-Service Portal")');
  const names = await page.$$eval('.vm-card', cs => cs.map(c => c.dataset.name));
  assert(names.length === 1 && names[0] === 'web01', 'alice sees only web01: ' + names.join(','));
  assert(await page.$('.tree') === null && await page.$('table.hosts') === null, 'no host tree or host table in the portal');
  assert(await page.$('#new-vm') === null, 'no New VM without template grants');
  await page.waitForSelector(`${card('web01')} img.thumb[data-live="1"]`, { timeout: 15000 });
  // Alice can operate her VM from the context menu.
  await rightClickAction(page, 'web01', 'pause');
  await page.waitForSelector(`${card('web01')}[data-state="paused"]`, { timeout: 15000 });
  await shot(page, '05-self-service');
  await rightClickAction(page, 'web01', 'resume');
  await page.waitForSelector(`${card('web01')}[data-state="running"]`, { timeout: 15000 });
  // A VM the administrator gives her appears in her portal, and leaves it
  // when taken back, without a reload (the vm.updated events she is told of).
  const legacy = (await A.req('GET', '/vms?name=legacy01')).items[0];
  allowHttp(page, 404, new RegExp(`^/api/v1/vms/${legacy.id}/thumbnail$`), 'legacy01 leaves her scope while its thumbnail may be in flight');
  await A.req('PATCH', `/vms/${legacy.id}`, { owner: 'alice' });
  try {
    await page.waitForSelector(card('legacy01'), { timeout: 10000 });
  } finally {
    await A.req('PATCH', `/vms/${legacy.id}`, { owner: null });
  }
  await page.waitForSelector(card('legacy01'), { state: 'detached', timeout: 10000 });
  // Her Backups view: the points of her VMs only, no datastores (an
  // administrator's); back to her VMs.
  await page.click('#nav-backups');
  await page.waitForSelector('#backups-view .points-box :is(table, p)', { timeout: 10000 });
  assert(await page.$('#backups-view .datastores-box') === null, 'no datastores for a self-service user');
  const pointVms = await page.$$eval('#backups-view tr.point-row', rs => rs.map(r => r.dataset.vm));
  assert(pointVms.every(n => n === 'web01'), 'only points of her VMs: ' + pointVms.join(','));
  await page.click('#nav-backups');
  await page.waitForSelector(card('web01'));
  if (granted) {
    await page.waitForSelector('.tpl-card[data-template="small"] button.deploy', { timeout: 15000 });
    const vmsQuota = await page.textContent('.quota[data-quota="VMs"]');
    assert(/0 of 3 used, 3 left/.test(vmsQuota), 'the VM quota is shown: ' + vmsQuota);
    await page.click('.tpl-card[data-template="small"] button.deploy');
    await page.fill('form.wizard input[name=name]', 'alice02');
    await page.click('form.wizard button[type=submit]');
    await page.waitForSelector('form.wizard', { state: 'detached' });
    await page.waitForSelector(`${card('alice02')}`, { timeout: 20000 });
    await page.waitForFunction(() => /1 of 3 used, 2 left/.test(document.querySelector('.quota[data-quota="VMs"]')?.textContent || ''), null, { timeout: 20000 });
    const mine = await page.$$eval('.vm-card', cs => cs.map(c => c.dataset.name).sort());
    assert(mine.join(',') === 'alice02,web01', 'alice sees her two VMs only: ' + mine.join(','));
    await shot(page, '05-self-service');
  }
  assert(page.errors.length === 0, 'page errors: ' + page.errors.join('; '));
  await page.context().close();
});

test('read-only and delegated users: the console offers what the server allows them, without errors', async () => {
  await A.req('POST', '/users', { name: 'rita', password: 'rita-password-1', role: 'read-only' });
  await A.req('POST', '/users', { name: 'dave', password: 'dave-password-1', role: 'delegated-administrator', scopes: ['Seattle'] });
  const page = await newPage();
  await loginAs(page, A.url, 'rita', 'rita-password-1');
  await page.waitForSelector(card('legacy01'));
  await page.waitForSelector('tr.host-row[data-name="seattle1"]');
  assert(await page.$('#new-vm') === null, 'no New VM for a read-only user');
  const menuOf = async sel => {
    await page.click(sel, { button: 'right' });
    await page.waitForSelector('.menu');
    const items = await page.$$eval('.menu .menu-item', els => els.map(e => e.dataset.action));
    await page.keyboard.press('Escape');
    return items;
  };
  const vmItems = await menuOf(card('legacy01'));
  assert(vmItems.length === 0, 'a read-only user is offered no VM actions: ' + vmItems.join(','));
  const hostItems = await menuOf('tr.host-row[data-name="seattle1"]');
  assert(hostItems.length === 0, 'a read-only user is offered no host actions: ' + hostItems.join(','));
  await page.click(card('legacy01'));
  await page.waitForSelector('.details h3');
  assert(await page.$('.details .console-btn') === null, 'no console button for a read-only user');
  await page.context().close();

  // A delegated administrator of Seattle: New VM, with the hosts of the
  // group it selected rated (it may not rate the whole estate).
  const p2 = await newPage();
  await loginAs(p2, A.url, 'dave', 'dave-password-1');
  await p2.waitForSelector('#new-vm');
  await p2.click('.tree-node:has-text("Production")');
  await p2.click('#new-vm');
  await p2.fill('form.wizard input[name=name]', 'dave01');
  await p2.click('form.wizard button[type=submit]');
  await p2.fill('form.wizard input[name=memory]', '128');
  await p2.fill('form.wizard input[name=disk]', '0');
  await p2.click('form.wizard button[type=submit]');
  await p2.waitForSelector('form.wizard .hostpick .hostopt');
  const opts = await p2.$$eval('form.wizard .hostopt .hname', els => els.map(e => e.textContent));
  assert(opts.join(',') === 'Let Armada choose,seattle1', 'the hosts of Seattle/Production, rated: ' + opts.join(','));
  await p2.click('form.wizard button:has-text("Cancel")');
  await p2.context().close();
});

test('phone-sized screen: the console fits and still works', async () => {
  const page = await newPage({ width: 390, height: 844 });
  await loginAs(page, A.url, A.admin.name, A.admin.password);
  await page.waitForSelector(card('web01'));
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert(overflow <= 0, `no sideways scrolling on a phone (${overflow} px too wide)`);
  await shot(page, '07-phone');
  await page.context().close();
});

test('host details show a performance chart once monitoring has samples', async () => {
  const page = SHARED.admin;
  const host = (await A.req('GET', '/hosts?name=local')).items[0];
  const probe = await fetch(`${A.url}/api/v1/metrics/host/${host.id}?last=600`, { headers: { Authorization: 'Bearer ' + A.token } });
  if (probe.status === 404 && /no API resource/.test(await probe.text())) throw new Skip('the server has no /api/v1/metrics');
  await page.click('tr.host-row[data-name="local"]');
  await page.waitForSelector('.details .chart:not([hidden]) canvas', { timeout: 25000 });
  await shot(page, '10-host-chart');
});

test('host context menu: maintenance mode on and off (when the server has it)', async () => {
  const page = SHARED.admin;
  const host = (await A.req('GET', '/hosts?name=spare')).items[0];
  const probe = await fetch(`${A.url}/api/v1/hosts/${host.id}/maintenance`, { headers: { Authorization: 'Bearer ' + A.token } });
  if (probe.status === 404) throw new Skip('the server has no /hosts/{id}/maintenance');
  await page.click('tr.host-row[data-name="spare"]', { button: 'right' });
  await page.click('.menu .menu-item[data-action="maintenance"]');
  await page.waitForSelector('tr.host-row[data-name="spare"][data-state="maintenance"]', { timeout: 15000 });
  await page.waitForSelector('li.job[data-kind="host.maintenance"][data-target="spare"][data-state="succeeded"]', { timeout: 15000 });
  await page.click('tr.host-row[data-name="spare"]', { button: 'right' });
  await page.waitForSelector('.menu .menu-item[data-action="maintenance"]:has-text("Leave maintenance")');
  await page.click('.menu .menu-item[data-action="maintenance"]');
  await page.waitForSelector('tr.host-row[data-name="spare"][data-state="ok"]', { timeout: 15000 });
});

/* The event stream: the console follows GET /events/stream and re-reads
 * only what a message concerns; it polls only when the stream is refused. */

// The list requests a page makes (not thumbnails, charts or the stream).
const LIST_RE = /^\/api\/v1\/(vms|hosts|host-groups|jobs|events|health|self-service)$/;
function countLists(page) {
  const seen = [];
  const on = r => {
    const u = new URL(r.url());
    if (LIST_RE.test(u.pathname)) seen.push({ at: Date.now(), path: u.pathname });
  };
  page.on('request', on);
  return { seen, since: t => seen.filter(x => x.at >= t), stop: () => page.off('request', on) };
}

// Until no list request went out for quietMs (the page has settled).
async function settled(lists, quietMs, timeoutMs) {
  await waitFor(() => { const l = lists.seen.at(-1); return !l || Date.now() - l.at >= quietMs; }, timeoutMs, `${quietMs} ms without a list request`);
}

test('event stream: an idle live page makes (almost) no list requests', async () => {
  const page = await newPage();
  SHARED.livePage = page;
  await loginAs(page, A.url, A.admin.name, A.admin.password);
  await page.waitForSelector('.live-state[data-state="live"]', { timeout: 10000 });
  await page.waitForSelector(card('legacy01'));
  const lists = SHARED.liveLists = countLists(page);
  await settled(lists, 1500, 20000);
  const t0 = Date.now();
  await sleep(10000);
  const n = lists.since(t0);
  // Polling every 3 s would make 3 rounds of 4-6 requests.
  assert(n.length <= 2, `at most a couple of list requests in 10 s while live and idle, got ${n.length}: ${n.map(x => x.path).join(' ')}`);
  assert(await page.$('.live-state[data-state="live"]'), 'still live');
});

test('event stream: a VM another session creates, and its job, appear without polling', async () => {
  const page = SHARED.livePage;
  const lists = SHARED.liveLists;
  await settled(lists, 1000, 20000);
  const t0 = Date.now();
  const c = await A.req('POST', '/vms', { name: 'live01', host: 'seattle1', cpus: 1, memory_mib: 64 });
  await page.waitForSelector(card('live01'), { timeout: 5000 });
  await page.waitForSelector(`li.job[data-id="${c.job.id}"][data-state="succeeded"]`, { timeout: 10000 });
  const took = Date.now() - t0;
  // The job's states come with its messages: the jobs list is not read.
  const jobsReads = lists.since(t0).filter(x => x.path === '/api/v1/jobs');
  assert(jobsReads.length === 0, `the job's changes came from the stream, not from GET /jobs (${jobsReads.length} reads in ${took} ms)`);
  // A start: the running state and the end show without a reload.
  const vm = (await A.req('GET', '/vms?name=live01')).items[0];
  const s = await A.req('POST', `/vms/${vm.id}/actions/start`, {});
  await page.waitForSelector(`li.job[data-id="${s.job.id}"][data-kind="vm.start"]`, { timeout: 5000 });
  await page.waitForSelector(`li.job[data-id="${s.job.id}"][data-state="succeeded"]`, { timeout: 10000 });
  await page.waitForSelector(`${card('live01')}[data-state="running"]`, { timeout: 5000 });
  // The event pane has the VM's events.
  await page.waitForFunction(() => [...document.querySelectorAll('li.event .ev-msg')].some(e => e.textContent.includes("'live01'")), null, { timeout: 5000 });
  await shot(page, '11-live');
  lists.stop();
  // The VM goes next: a thumbnail the page asked for just before its card
  // left may find it gone.
  allowHttp(page, 404, new RegExp(`^/api/v1/vms/${vm.id}/thumbnail$`), 'the VM is deleted while its thumbnail may be in flight');
  await A.req('POST', `/vms/${vm.id}/actions/kill`, {}).then(j => A.job(j.job.id));
  const d = await A.req('DELETE', `/vms/${vm.id}`);
  if (d?.job) await A.job(d.job.id);
  await page.waitForSelector(card('live01'), { state: 'detached', timeout: 10000 });
  await page.context().close();
});

test('event stream refused (--max-streams 1, slot taken): the page polls and says so, then goes live', async () => {
  const B = await new Armadad(['--max-streams', '1']).start();
  const hold = new AbortController();
  try {
    // Another client holds the one stream armadad serves.
    const held = await fetch(B.url + '/api/v1/events/stream', { headers: { Authorization: 'Bearer ' + B.token }, signal: hold.signal });
    assert(held.status === 200, 'the first stream opens: ' + held.status);
    held.body.getReader().read().catch(() => {});
    const page = SHARED.refusedPage = await newPage();
    allowHttp(page, 429, /^\/api\/v1\/events\/stream$/, 'armadad serves one stream and another client holds it');
    const lists = countLists(page);
    await loginAs(page, B.url, B.admin.name, B.admin.password);
    await page.waitForSelector('.live-state[data-state="polling"]', { timeout: 10000 });
    const r = await B.req('POST', '/hosts', { name: 'h1', uri: 'test:///default' });
    await B.job(r.job.id);
    await page.waitForSelector('tr.host-row[data-name="h1"]', { timeout: 10000 });
    const c = await B.req('POST', '/vms', { name: 'poll01', host: 'h1', cpus: 1, memory_mib: 64, force: true });
    await B.job(c.job.id);
    await page.waitForSelector(card('poll01'), { timeout: 10000 });
    assert(await page.$('.live-state[data-state="polling"]'), 'still polling');
    const t0 = Date.now();
    await sleep(9000);
    const polled = lists.since(t0).filter(x => x.path === '/api/v1/vms');
    assert(polled.length >= 2, `polling re-reads the VMs every few seconds: ${polled.map(x => x.at - t0).join(', ')} ms; all: ${lists.seen.map(x => `${x.path}@${x.at - t0}`).join(' ')}`);
    await shot(page, '12-polling');
    // The slot comes free (armadad notices the closed stream at its next
    // heartbeat); the page tries again and goes live.
    hold.abort();
    await page.waitForSelector('.live-state[data-state="live"]', { timeout: 45000 });
    lists.stop();
  } finally {
    await SHARED.refusedPage?.context().close();
    hold.abort();
    await B.stop();
  }
});

test('logout returns to the login page', async () => {
  const page = SHARED.admin;
  await page.click('#logout');
  await page.waitForSelector('form.login');
  await page.waitForFunction(() => document.querySelector('form.login .error')?.textContent.includes('logged out'));
  allowHttp(page, 401, /^\/api\/v1\/vms$/, 'the test asks for the VMs after logging out');
  const r = await page.evaluate(async () => (await fetch('/api/v1/vms')).status);
  assert(r === 401, 'the cookie is gone after logout: ' + r);
  await page.context().close();
});

/* A group larger than a page (issue 17): the console lists a page at a time,
 * sorted and searched by armadad, updates the rows on screen from the
 * stream, and asks thumbnails only for the cards on screen. */
const BIG_N = 60;
async function bigEstate() {
  if (SHARED.big) return SHARED.big;
  // Monitoring every second: alerts (the health badges' test) open soon.
  const B = await new Armadad(['--monitor-interval-ms', '1000']).start();
  SHARED.bigArmadad = B;
  const xml = path.join(B.dir, 'big.xml');
  // Memory out of step with the names: sorting by it differs from the name order.
  const doms = Array.from({ length: BIG_N }, (_, j) => `<domain type='test'><name>big-vm${String(j).padStart(2, '0')}</name>` +
    `<memory>${65536 * (1 + (j * 7) % 11)}</memory><vcpu>${1 + j % 3}</vcpu><os><type>hvm</type></os></domain>`).join('');
  fs.writeFileSync(xml, `<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>16</cores><threads>1</threads><active>16</active>` +
    `<mhz>2000</mhz></cpu><memory>67108864</memory>${doms}</node>\n`);
  await B.req('POST', '/host-groups', { path: 'Big' });
  const r = await B.req('POST', '/hosts', { name: 'bighost', uri: `test://${xml}`, group: 'Big' });
  await B.job(r.job.id);
  await waitFor(async () => (await B.req('GET', '/summary')).vms.total >= BIG_N, 20000, 'the big host\'s VMs to be discovered');
  const group = (await B.req('GET', '/host-groups')).items.find(g => g.path === 'Big').id;
  const page = await newPage();
  // Every request the page makes, for the assertions below.
  page.reqs = [];
  page.on('request', q => { const u = new URL(q.url()); if (u.pathname.startsWith('/api/')) page.reqs.push({ at: Date.now(), path: u.pathname, search: u.search }); });
  await loginAs(page, B.url, B.admin.name, B.admin.password);
  await page.waitForSelector('.live-state[data-state="live"]', { timeout: 10000 });
  await page.click('.tree-node:has-text("Big")');
  SHARED.big = { B, page, group };
  return SHARED.big;
}
const cardNames = page => page.$$eval('.vm-card', cs => cs.map(c => c.dataset.name));

test('a group larger than a page: paged, sorted and searched by armadad', async () => {
  const { B, page, group } = await bigEstate();
  await page.waitForFunction(n => document.querySelectorAll('.vm-card').length === n, 48, { timeout: 10000 });
  let names = await cardNames(page);
  assert(names[0] === 'big-vm00' && names[47] === 'big-vm47', 'the first page in name order: ' + names.slice(0, 3) + '…' + names.at(-1));
  await page.waitForFunction(() => /60 VMs/.test(document.querySelector('#vm-count')?.textContent || ''), null, { timeout: 5000 });
  assert(await page.$('#vm-prev[disabled]'), 'no previous page on the first');
  await page.click('#vm-next');
  await page.waitForFunction(() => document.querySelectorAll('.vm-card').length === 12, null, { timeout: 5000 });
  names = await cardNames(page);
  assert(names[0] === 'big-vm48' && names.at(-1) === 'big-vm59', 'the second page: ' + names);
  assert(/49–60/.test(await page.textContent('#vm-pager .page-label')), 'the pager says where we are');
  assert(await page.$('#vm-next[disabled]'), 'no next page on the last');
  await page.click('#vm-prev');
  await page.waitForFunction(() => document.querySelectorAll('.vm-card').length === 48, null, { timeout: 5000 });
  // Sort: the order comes from armadad.
  const want = (await B.req('GET', `/vms?sort=-memory&under_group_id=${group}&limit=48`)).items.map(v => v.name);
  await page.selectOption('#vm-sort', '-memory');
  await page.waitForFunction(w => [...document.querySelectorAll('.vm-card')].map(c => c.dataset.name).join() === w, want.join(), { timeout: 5000 });
  assert(page.reqs.some(r => r.path === '/api/v1/vms' && /sort=-memory/.test(r.search)), 'the sort went to the server');
  // Search: a name prefix, filtered by the server.
  await page.fill('#vm-search', 'big-vm5');
  await page.waitForFunction(() => document.querySelectorAll('.vm-card').length === 10, null, { timeout: 5000 });
  names = (await cardNames(page)).sort();
  assert(names.every(n => n.startsWith('big-vm5')), 'only the matching VMs: ' + names);
  assert(page.reqs.some(r => r.path === '/api/v1/vms' && /name_prefix=big-vm5/.test(r.search)), 'the search went to the server');
  await page.selectOption('#vm-state', 'stopped');
  await page.waitForSelector('.vms-section .empty:has-text("No VM matches")', { timeout: 5000 });
  await page.selectOption('#vm-state', '');
  await page.fill('#vm-search', '');
  await page.selectOption('#vm-sort', 'name');
  await page.waitForFunction(() => document.querySelectorAll('.vm-card').length === 48 &&
    document.querySelector('.vm-card').dataset.name === 'big-vm00', null, { timeout: 5000 });
  // Hosts sort by a column header, on the server too.
  await page.click('table.hosts th button.sort[data-sort="cpus"]');
  await page.waitForSelector('table.hosts th button.sort[data-sort="cpus"][data-dir="asc"]');
  assert(page.reqs.some(r => r.path === '/api/v1/hosts' && /sort=cpus/.test(r.search)), 'the host sort went to the server');
  await shot(page, '13-big-group');
});

test('a row on screen updates from the stream without reading the list again', async () => {
  const { B, page } = await bigEstate();
  await page.waitForSelector(`${card('big-vm00')}[data-state="running"]`);
  const lists = countLists(page);
  await settled(lists, 1000, 20000);
  const t0 = Date.now();
  const vm = (await B.req('GET', '/vms?name=big-vm00')).items[0];
  const j = await B.req('POST', `/vms/${vm.id}/actions/stop`, {});
  await page.waitForSelector(`${card('big-vm00')}[data-state="stopped"]`, { timeout: 10000 });
  await page.waitForFunction(() => /1 stopped/.test(document.querySelector('#vm-count')?.textContent || ''), null, { timeout: 5000 });
  await B.job(j.job.id);
  await sleep(1000);
  lists.stop();
  // A list read: /vms or /hosts for a page; the row's own read asks ?name=.
  const since = page.reqs.filter(r => r.at >= t0);
  const listReads = since.filter(r => (r.path === '/api/v1/vms' || r.path === '/api/v1/hosts') && !/[?&]name=/.test(r.search));
  assert(listReads.length === 0, `no list read for a change of a row on screen, got ${listReads.map(r => r.path + r.search).join(' ')}`);
  assert(since.some(r => r.path === '/api/v1/vms' && /^\?name=big-vm00(&health=1)?$/.test(r.search)), 'the row was read by itself (GET /vms?name=big-vm00)');
  const sums = page.reqs.filter(r => r.at >= t0 && r.path === '/api/v1/summary').length;
  assert(sums >= 1 && sums <= 4, `the counts were read again, debounced (${sums} reads)`);
  const s = await B.req('POST', `/vms/${vm.id}/actions/start`, {});
  await B.job(s.job.id);
  await page.waitForSelector(`${card('big-vm00')}[data-state="running"]`, { timeout: 10000 });
});

test('health badges ride on the rows: an alert shows on its card without the whole health tree', async () => {
  const { B, page } = await bigEstate();
  const vm = (await B.req('GET', '/vms?name=big-vm01')).items[0];
  await B.req('POST', '/alert-rules', { name: 'big-paused', object_kind: 'vm', metric: 'state', comparison: '==', state: 'paused',
    severity: 'warning', scope: 'object', scope_id: vm.id });
  await page.waitForSelector(`${card('big-vm01')} span.health[data-health="healthy"]`, { timeout: 10000 });
  const t0 = Date.now();
  await B.job((await B.req('POST', `/vms/${vm.id}/actions/pause`, {})).job.id);
  await page.waitForSelector(`${card('big-vm01')} span.health[data-health="warning"]`, { timeout: 20000 });
  const title = await page.getAttribute(`${card('big-vm01')} span.health`, 'title');
  assert(/alert \d+ \(warning\)/.test(title || ''), 'the badge says why: ' + title);
  // The host's row rolls it up.
  await page.waitForSelector('tr.host-row[data-name="bighost"] span.health[data-health="warning"]', { timeout: 10000 });
  const since = page.reqs.filter(r => r.at >= t0);
  assert(!since.some(r => r.path === '/api/v1/health'), 'no GET /health: the rows carry their health');
  assert(since.some(r => r.path === '/api/v1/vms' && /health=1/.test(r.search)), 'the rows were read with health=1');
  const lists = countLists(page);
  await B.job((await B.req('POST', `/vms/${vm.id}/actions/resume`, {})).job.id);
  await page.waitForSelector(`${card('big-vm01')} span.health[data-health="healthy"]`, { timeout: 20000 });
  // The alert's resolution re-reads the page twice (at once and after the
  // answer's lag): the next test starts on a settled page.
  await waitFor(async () => (await B.req('GET', '/alerts?state=open')).items.every(a => a.rule_name !== 'big-paused'), 20000,
    'the big-paused alert to resolve');
  await settled(lists, 2000, 20000);
  lists.stop();
});

test('owner filter: owner:NAME in the search lists only that owner\'s VMs, from armadad; the details give a VM an owner', async () => {
  const { B, page, group } = await bigEstate();
  await B.req('POST', '/users', { name: 'carol', password: 'carol-pass-123', role: 'self-service' });
  const all = (await B.req('GET', `/vms?under_group_id=${group}&limit=100`)).items;
  const idOf = n => all.find(v => v.name === n).id;
  const mine = ['big-vm07', 'big-vm31', 'big-vm52'];
  for (const n of mine) await B.req('PATCH', `/vms/${idOf(n)}`, { owner: 'carol' });
  const names = () => page.$$eval('.vm-card', cs => cs.map(c => c.dataset.name).join());
  try {
    const t0 = Date.now();
    await page.fill('#vm-search', 'owner:carol');
    await page.waitForFunction(w => [...document.querySelectorAll('.vm-card')].map(c => c.dataset.name).join() === w, mine.join(), { timeout: 5000 });
    assert(page.reqs.some(r => r.at >= t0 && r.path === '/api/v1/vms' && /[?&]owner=carol(&|$)/.test(r.search)), 'the owner filter went to the server');
    // Together with a name prefix, in either order.
    await page.fill('#vm-search', 'big-vm5 owner:carol');
    await page.waitForFunction(() => [...document.querySelectorAll('.vm-card')].map(c => c.dataset.name).join() === 'big-vm52', null, { timeout: 5000 });
    assert(page.reqs.some(r => r.path === '/api/v1/vms' && /owner=carol/.test(r.search) && /name_prefix=big-vm5/.test(r.search)), 'both went to the server');
    await page.fill('#vm-search', 'owner:nobody');
    await page.waitForSelector('.vms-section .empty:has-text("No VM matches")', { timeout: 5000 });
    // The details of a VM give it an owner; the filtered list then holds it.
    await page.fill('#vm-search', '');
    await page.waitForFunction(() => document.querySelectorAll('.vm-card').length === 48, null, { timeout: 5000 });
    await page.click(card('big-vm01'));
    await page.fill('#owner-input', 'carol');
    await page.click('#owner-set');
    await page.waitForSelector('.toast:has-text("now belongs to \'carol\'")', { timeout: 5000 });
    assert((await B.req('GET', `/vms/${idOf('big-vm01')}`)).owner_name === 'carol', 'the server has the new owner');
    // An unknown user: the server's sentence, and nothing changes.
    allowHttp(page, 400, /^\/api\/v1\/vms\/\d+$/, 'an unknown owner is refused');
    await page.fill('#owner-input', 'no-such-user');
    await page.click('#owner-set');
    await page.waitForSelector('.toast.error:has-text("There is no user named \'no-such-user\'.")', { timeout: 5000 });
    assert((await B.req('GET', `/vms/${idOf('big-vm01')}`)).owner_name === 'carol', 'a refused owner changes nothing');
    await page.click('.details .close');
    await page.fill('#vm-search', 'owner:carol');
    await page.waitForFunction(() => [...document.querySelectorAll('.vm-card')].map(c => c.dataset.name).join() === 'big-vm01,big-vm07,big-vm31,big-vm52',
      null, { timeout: 5000 });
    // A VM taken from its owner elsewhere leaves the filtered list (the stream's vm.updated).
    await B.req('PATCH', `/vms/${idOf('big-vm31')}`, { owner: null });
    await page.waitForFunction(() => [...document.querySelectorAll('.vm-card')].map(c => c.dataset.name).join() === 'big-vm01,big-vm07,big-vm52',
      null, { timeout: 5000 });
    await shot(page, '14-owner-filter');
  } finally {
    for (const n of [...mine, 'big-vm01']) await B.req('PATCH', `/vms/${idOf(n)}`, { owner: null });
    await page.fill('#vm-search', '');
    await page.waitForFunction(() => document.querySelectorAll('.vm-card').length === 48, null, { timeout: 5000 }).catch(() => {});
  }
  assert((await names()).split(',').length === 48, 'the search cleared');
});

test('jobs and events panes: Older pages back by before_id (twice), one page in the DOM, Newer returns', async () => {
  const { B, page, group } = await bigEstate();
  const host = (await B.req('GET', '/hosts?name=bighost')).items[0];
  for (let i = 0; i < 32; i++) await B.job((await B.req('POST', `/hosts/${host.id}/actions/refresh`, {})).job.id);
  const vm = (await B.req('GET', `/vms?under_group_id=${group}&name=big-vm02`)).items[0];
  await B.req('POST', '/users', { name: 'dave', password: 'dave-pass-1234', role: 'self-service' });
  for (let i = 0; i < 64; i++) await B.req('PATCH', `/vms/${vm.id}`, { owner: i % 2 ? null : 'dave' });
  const newestJob = (await B.req('GET', '/jobs?limit=1')).items[0].id;
  await page.waitForSelector(`li.job[data-id="${newestJob}"]`, { timeout: 10000 });
  const ids = sel => page.$$eval(sel, ls => ls.map(l => +l.dataset.id));
  for (const [kind, sel, size] of [['jobs', 'ul.jobs li.job', 15], ['events', 'ul.events li.event', 30]]) {
    if (kind === 'events') {
      await page.click('button.tab:has-text("Events")');
      const newest = (await B.req('GET', '/events?limit=1')).items[0].id;
      await page.waitForSelector(`li.event[data-id="${newest}"]`, { timeout: 10000 });
    }
    const first = await ids(sel);
    assert(first.length === size, `${kind}: a page of ${size} first, got ${first.length}`);
    let prev = first;
    for (let n = 0; n < 2; n++) {
      const t0 = Date.now();
      await page.click(`#${kind}-more`);
      await page.waitForFunction(([s, min]) => { const l = [...document.querySelectorAll(s)].map(x => +x.dataset.id); return l.length && l[0] < min; },
        [sel, Math.min(...prev)], { timeout: 5000 });
      const got = await ids(sel);
      const want = (await B.req('GET', `/${kind}?limit=${size}&before_id=${prev.at(-1)}`)).items.map(x => x.id);
      assert(got.join() === want.join(), `${kind}: Older #${n + 1} shows the server's next page back: ${got.slice(0, 3)}… vs ${want.slice(0, 3)}…`);
      assert(got.length <= size, `${kind}: one page in the DOM (${got.length})`);
      assert(page.reqs.some(r => r.at >= t0 && r.path === `/api/v1/${kind}` && r.search.includes(`before_id=${prev.at(-1)}`)), `${kind}: asked by before_id`);
      prev = got;
    }
    const label = await page.textContent(`#${kind}-pager .page-label`);
    assert(label === `${2 * size + 1}–${2 * size + prev.length}`, `${kind}: the pager says where we are: ${label}`);
    await page.click(`#${kind}-newer`);
    await page.click(`#${kind}-newer`);
    await page.waitForFunction(([s, first]) => [...document.querySelectorAll(s)].map(x => +x.dataset.id)[0] >= first, [sel, first[0]], { timeout: 5000 });
    assert(await page.$(`#${kind}-newer[disabled]`), `${kind}: back on the newest page`);
  }
  await shot(page, '15-events-older');
  await page.click('button.tab:has-text("Jobs")');
});

test('thumbnails are asked only for the cards on screen, a few at a time', async () => {
  const { page } = await bigEstate();
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForFunction(() => document.querySelectorAll('.vm-card').length === 48);
  const thumbs = () => page.reqs.filter(r => /^\/api\/v1\/vms\/\d+\/thumbnail$/.test(r.path));
  const before = thumbs().length;
  // Reload: a fresh page starts without pictures.
  await page.reload();
  page.reqs.length = 0;
  await page.waitForSelector('.topbar .whoami');
  await page.click('.tree-node:has-text("Big")');
  await page.waitForFunction(() => document.querySelectorAll('.vm-card').length === 48, null, { timeout: 10000 });
  const t0 = Date.now();
  await sleep(3000);
  const onScreen = await page.$$eval('.vm-card', cs => cs.filter(c => {
    const b = c.getBoundingClientRect();
    return b.bottom > -100 && b.top < innerHeight + 100;
  }).map(c => +c.dataset.id));
  const asked = new Set(thumbs().map(r => +/\/vms\/(\d+)\//.exec(r.path)[1]));
  assert(before >= 0 && onScreen.length < 48, `the page is longer than the screen (${onScreen.length} cards on screen)`);
  assert(asked.size > 0, 'the cards on screen got pictures asked for');
  const off = [...asked].filter(id => !onScreen.includes(id));
  assert(off.length === 0, `no picture asked for cards off screen: ${off.length} (${asked.size} asked, ${onScreen.length} on screen)`);
  const n3 = thumbs().filter(r => r.at >= t0 - 3000).length;
  assert(n3 <= 3000 / 250 + 2, `at most a few pictures a second: ${n3} in about 3 s`);
  // Scrolling down brings the cards below into view: their pictures follow.
  await page.evaluate(() => document.querySelector('.vm-card:last-child').scrollIntoView());
  const last = await page.$eval('.vm-card:last-child', c => +c.dataset.id);
  await waitFor(() => thumbs().some(r => r.path === `/api/v1/vms/${last}/thumbnail`), 10000, 'the last card\'s picture to be asked for');
  await page.context().close();
  await SHARED.bigArmadad.stop();
  SHARED.big = null;
});

test('an expired session returns to the login page', async () => {
  const B = await new Armadad(['--token-ttl-s', '5']).start();
  try {
    const page = await newPage();
    allowHttp(page, 401, /^\/api\/v1\//, 'the session expires after 5 s on purpose: the polls after that are refused');
    await loginAs(page, B.url, B.admin.name, B.admin.password);
    // The console polls; the first answer after the 5 s are up is a 401.
    await page.waitForSelector('form.login', { timeout: 20000 });
    await page.waitForFunction(() => document.querySelector('form.login .error')?.textContent.includes('session has ended'));
    await shot(page, '08-expired');
    await page.context().close();
  } finally {
    await B.stop();
  }
});

/* ------------------------------------------------------------------ */

async function setup() {
  // Monitoring samples often, so that charts have points (when armadad has it).
  let help = '';
  try { help = execFileSync(ARMADAD, ['--help'], { encoding: 'utf8', env: { ...process.env, ASAN_OPTIONS: 'detect_leaks=0' } }); } catch (e) { help = String(e.stdout || ''); }
  const monitorFlag = help.includes('--monitor-interval-ms');
  vnc = await startFakeVnc();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'armada-browser-node-'));
  const nodeXml = path.join(dir, 'legacy.xml');
  // A test-driver host with one running domain whose VNC is our fake server.
  fs.writeFileSync(nodeXml, `<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>4</cores><threads>1</threads><active>4</active><mhz>2000</mhz></cpu>
  <memory>8388608</memory>
  <domain type='test'>
    <name>legacy01</name>
    <uuid>0b6f3a52-1c2d-4e5f-8a9b-0c1d2e3f4a5b</uuid>
    <memory>131072</memory>
    <vcpu>1</vcpu>
    <os><type>hvm</type></os>
    <devices><graphics type='vnc' port='${vnc.port}' autoport='no' listen='127.0.0.1'/></devices>
  </domain>
</node>
`);
  // test:///default is one hypervisor shared by every connection of a
  // process, so a second host needs its own node file.
  const emptyXml = path.join(dir, 'seattle1.xml');
  fs.writeFileSync(emptyXml, `<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>8</cores><threads>1</threads><active>8</active><mhz>2000</mhz></cpu>
  <memory>16777216</memory>
</node>
`);
  SHARED.nodeDir = dir;
  SHARED.backupRoot = path.join(dir, 'backup');
  fs.mkdirSync(SHARED.backupRoot);
  A = await new Armadad(['--ensure-host', 'local=test:///default', '--ensure-host', `legacy=test://${nodeXml}`, '--backup-root', SHARED.backupRoot,
    ...(monitorFlag ? ['--monitor-interval-ms', '500'] : [])]).start();
  await A.req('POST', '/host-groups', { path: 'Seattle/Production' });
  await A.req('POST', '/host-groups', { path: 'Seattle/Test' });
  const r = await A.req('POST', '/hosts', { name: 'seattle1', uri: `test://${emptyXml}`, group: 'Seattle/Production' });
  await A.job(r.job.id);
  const spareXml = path.join(dir, 'spare.xml');
  fs.writeFileSync(spareXml, fs.readFileSync(emptyXml));
  const r2 = await A.req('POST', '/hosts', { name: 'spare', uri: `test://${spareXml}`, group: 'Seattle/Test' });
  await A.job(r2.job.id);
}

async function main() {
  const t0 = Date.now();
  let passed = 0, failed = 0, skipped = 0;
  browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--no-first-run', '--disable-default-apps', '--disable-extensions'],
  });
  try {
    await setup();
    for (const t of tests) {
      if (ONLY && !ONLY.split('|').some(o => t.name.includes(o))) continue;
      const s = Date.now();
      try {
        await t.fn();
        const errs = takePageErrors();
        assert(errs.length === 0, `the browser logged ${errs.length} error(s):\n        ` + errs.slice(0, 12).join('\n        '));
        passed++;
        console.log(`ok    ${t.name} (${Date.now() - s} ms)`);
      } catch (e) {
        if (e instanceof Skip) {
          skipped++;
          console.log(`skip  ${t.name}: ${e.message}`);
          continue;
        }
        failed++;
        const errs = takePageErrors();
        console.log(`FAIL  ${t.name} (${Date.now() - s} ms)\n      ${String(e.stack || e).split('\n').slice(0, 14).join('\n      ')}` +
          (errs.length ? '\n      and the browser logged:\n        ' + errs.slice(0, 12).join('\n        ') : ''));
        if (SHARED.admin && !SHARED.admin.isClosed()) await shot(SHARED.admin, 'failure-' + passed + failed).catch(() => {});
      }
    }
  } catch (e) {
    failed++;
    console.log(`FAIL  setup: ${e.stack || e}`);
  } finally {
    if (failed && A) console.log('--- armadad log (tail) ---\n' + A.log().slice(-3000));
    await browser.close().catch(() => {});
    if (cspViolations.length) {
      failed++;
      console.log('FAIL  pages broke the Content-Security-Policy:\n      ' + [...new Set(cspViolations)].slice(0, 8).join('\n      '));
    } else if (passed) {
      passed++;
      console.log('ok    no page broke the Content-Security-Policy');
    }
    if (A) {
      await A.stop();
      // Last, after a clean shutdown: the sanitizers had their say.
      const bad = sanitizerErrors(A.finalLog || '');
      if (bad.length) {
        failed++;
        console.log('FAIL  armadad reported sanitizer errors:\n      ' + bad.slice(0, 8).join('\n      '));
      } else {
        passed++;
        console.log('ok    armadad ran and stopped without a sanitizer report');
      }
    }
    for (const d of DAEMONS) if (d !== A) await d.stop().catch(() => {});
    if (vnc) vnc.close();
    if (SHARED.nodeDir) fs.rmSync(SHARED.nodeDir, { recursive: true, force: true });
    if (SHARED.bed) testbedSync('down');
  }
  console.log(`browser suite took ${((Date.now() - t0) / 1000).toFixed(1)} s; screenshots in ${path.relative(ROOT, SHOTS)}/`);
  console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ''));
  process.exit(failed ? 1 : 0);
}

main();
