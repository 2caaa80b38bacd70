// Armada's web console: the login page, the administrator console (host-group
// tree, hosts and VMs with live thumbnails, actions, jobs and events) and the
// self-service portal (the same page, showing only what the user owns).
//
// Built for a large estate (issue 17): the page holds one page of hosts and
// one of VMs of the selected group, sorted and searched by armadad (sort,
// name_prefix, state, under_group_id); counts come from GET /summary; the
// event stream's messages update the rows on screen one by one (GET
// /vms?name=, one row) and the counts (debounced); thumbnails are asked only for the
// cards on screen (IntersectionObserver), a few per second at most. The search
// box takes `owner:NAME` too (GET /vms?owner=). The jobs and events panes show
// one page each, newest first; "Older" pages back by before_id through any
// length of history and "Newer" returns (a cursor stack, as the VM list): the
// DOM holds one page whatever the history, and only the newest page takes the
// stream's new rows (an older page would have to shift under the reader).
import { h, clear, mib, ago, stateBadge } from './dom.js';
import { api, get, login, logout, setExpiredHandler, ApiError, apiFetch, hasSession, featureSet } from './api.js';
import { VM_ACTIONS, runVmAction, runHostAction, showMenu } from './actions.js';
import { openWizard } from './wizard.js';
import { openConsole } from './console.js';
import { renderChart } from './charts.js';
import { renderPortal } from './portal.js';
import { snapshotsPanel } from './snapshots.js';
import { backupsPanel, backupsView } from './backups.js';
import { assessView } from './assess.js';
import { openLive } from './live.js';

// The page follows armadad's event stream (live.js) and re-reads only what a
// message concerns; without the stream it polls every POLL_MS (every second
// while a job runs); with it, only a slow safety poll every SAFETY_MS (host
// usage and health change without a message).
const POLL_MS = 3000;
const SAFETY_MS = 30000;
const DEBOUNCE_MS = 300;
const THUMB_MS = 4000;         // a visible running VM's picture is refreshed this often at most
const THUMB_GAP_MS = 250;      // and pictures are asked one after another, this far apart at least
const THUMB_BLANK_MS = 60000;  // a VM that had no picture (204) is asked again after this
const VM_PAGE = 48;
const HOST_PAGE = 25;
const SUMMARY_MS = 1000;       // counts: at most one GET /summary a second on a busy stream
const PATCH_MAX = 12;          // more changed rows on screen than this: one page read instead
const JOBS_PAGE = 15;
const EVENTS_PAGE = 30;
const root = document.getElementById('root');

const app = {
  user: null,
  features: {},
  data: { groups: [], hosts: [], vms: [], jobs: [], events: [], summary: null },
  groupId: 1,
  // What the lists show: a page of each, by a cursor stack (back = pop).
  vmView: { sort: 'name', prefix: '', owner: '', state: '', cursors: [null], next: null },
  hostView: { sort: 'name', cursors: [null], next: null },
  // The jobs and events panes: a page each, by a before_id stack ([null]: the newest).
  jobsView: { cursors: [null], next: null },
  eventsView: { cursors: [null], next: null },
  selected: null,          // { kind: 'vm'|'host', id }
  timers: [],
  thumbs: new Map(),       // vm id -> { img, url, busy }
  watched: new Set(),      // job ids started here
  closeView: null,
  live: null,              // the event stream (live.js), while the main view shows
  els: {},
};

const isAdminish = () => app.user && app.user.role !== 'self-service';
const inBackups = () => location.hash === '#/backups';
// The consolidation assessment with P2V's Convert (assess.js, issue 12).
const inAssess = () => location.hash === '#/assessment';

/* ------------------------------------------------------------------ */
/* login */

function showLogin(message) {
  stopTimers();
  app.user = null;
  const err = h('p.error', { role: 'alert' }, message || '');
  const name = h('input', { name: 'name', autocomplete: 'username', required: true });
  const pw = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const btn = h('button.primary', { type: 'submit' }, 'Log in');
  const form = h('form.login', {
    onsubmit: async e => {
      e.preventDefault();
      err.textContent = '';
      btn.disabled = true;
      try {
        const r = await login(name.value, pw.value);
        app.user = r.user;
        app.features = featureSet(r.features);
        start();
      } catch (ex) {
        err.textContent = ex instanceof ApiError ? ex.message : 'Armada cannot be reached.';
        btn.disabled = false;
      }
    },
  },
  h('div.brand', h('img', { src: '/favicon.svg', alt: '' }), h('span', 'Armada')),
  h('p.muted', 'Virtualization manager'),
  h('label.field', h('span', 'User name'), name),
  h('label.field', h('span', 'Password'), pw),
  err, btn);
  clear(root).append(h('div.login-page', form));
  document.title = 'Armada — log in';
  name.focus();
}

app.expired = () => {
  if (app.user) showLogin('Your session has ended. Log in again.');
};
setExpiredHandler(app.expired);

/* ------------------------------------------------------------------ */
/* the console page */

function start() {
  window.removeEventListener('hashchange', route);
  window.addEventListener('hashchange', route);
  route();
}

function stopTimers() {
  app.timers.forEach(t => clearInterval(t));
  app.timers = [];
  if (app.live) { app.live.close(); app.live = null; }
  clearTimeout(soon.timer);
  soon.timer = null;
  soon.parts.clear();
  for (const t of app.thumbs.values()) if (t.url) URL.revokeObjectURL(t.url);
  app.thumbs.clear();
  thumbQueue.length = 0;
  if (app.thumbObserver) { app.thumbObserver.disconnect(); app.thumbObserver = null; }
  if (app.closeView) { app.closeView(); app.closeView = null; }
}

function route() {
  if (!app.user) return;
  stopTimers();
  const m = /^#\/console\/(\d+)$/.exec(location.hash);
  if (m) {
    const id = +m[1];
    app.els = {};
    get(`/vms/${id}`).then(async vm => {
      app.closeView = await openConsole(app, root, vm);
      document.title = `Armada — console of ${vm.name}`;
    }).catch(e => {
      app.pendingToast = e.message;
      location.hash = '#/';
    });
    return;
  }
  renderShell();
  refresh();
  app.live = openLive({
    onMessage: (type, data) => (type === 'job' ? onJobMessage(data) : onEventMessage(data)),
    onState: (state, stale) => {
      showLiveState(state);
      // Lost: poll at once (and meet a 401 if that is why). Back after a
      // gap the stream cannot replay: read everything once.
      if (state === 'polling' || stale) refresh();
    },
  });
  showLiveState(app.live.state);
  // Polling: every POLL_MS, or every second while a job runs (live
  // progress). Live: every SAFETY_MS. The portal's grants every fifth poll.
  let last = Date.now(), polls = 0;
  app.timers.push(setInterval(() => {
    const live = app.live?.state === 'live';
    const busy = !live && app.data.jobs.some(j => j.state === 'queued' || j.state === 'running');
    if (busy || Date.now() - last >= (live ? SAFETY_MS : POLL_MS)) {
      last = Date.now();
      refresh(live || ++polls % 5 === 0 ? ALL : ALL.filter(p => p !== 'portal'));
    }
  }, 1000));
  app.timers.push(setInterval(refreshThumbs, 1000));
}

// The discreet "live" / "polling" mark in the top bar.
function showLiveState(state) {
  const el = app.els.live;
  if (!el) return;
  el.dataset.state = state;
  el.textContent = state === 'live' ? 'live' : state === 'polling' ? 'polling' : 'connecting';
  el.title = state === 'live' ? 'This page follows armadad\'s event stream: changes appear as they happen.'
    : state === 'polling' ? 'The event stream is not available: this page re-reads everything every few seconds.'
      : 'Connecting to armadad\'s event stream…';
}

function renderShell() {
  const admin = isAdminish();
  document.title = admin ? 'Armada — console' : 'Armada — my VMs';
  const e = app.els = {};
  e.tree = h('ul.tree', { role: 'tree' });
  e.actionbar = h('div.actionbar', { role: 'toolbar', 'aria-label': 'Actions' });
  e.hosts = h('tbody');
  e.vms = h('div.vmgrid');
  e.details = h('aside.details', { hidden: true });
  e.jobs = h('ul.jobs');
  e.events = h('ul.events');
  e.toast = h('div.toast', { role: 'status', hidden: true });
  e.title = h('h2.section-title');
  e.templates = h('section.templates', { hidden: true });

  const jobsTab = h('button.tab.active', { onclick: () => tab('jobs') }, 'Jobs');
  const eventsTab = h('button.tab', { onclick: () => tab('events') }, 'Events');
  function tab(which) {
    jobsTab.classList.toggle('active', which === 'jobs');
    eventsTab.classList.toggle('active', which === 'events');
    e.jobs.hidden = e.jobsPager.hidden = which !== 'jobs';
    e.events.hidden = e.eventsPager.hidden = which !== 'events';
  }
  e.events.hidden = true;

  const top = h('header.topbar',
    h('div.brand', h('img', { src: '/favicon.svg', alt: '' }), h('span', 'Armada'), h('span.portal', admin ? 'Administrator Console' : 'Self-Service Portal')),
    // Self-service users create VMs from granted templates (the portal);
    // read-only users create nothing.
    app.features['create-vm'] ? h('button.primary#new-vm', { onclick: () => openWizard(app) }, '+ New VM') : null,
    h('span.spacer'),
    // The Backups view (backups.js) in place of the hosts and VMs, and back.
    h('a.nav#nav-backups', { href: inBackups() ? '#/' : '#/backups', 'aria-current': inBackups() ? 'page' : null }, inBackups() ? 'VMs' : 'Backups'),
    app.features.p2v ? h('a.nav#nav-assess', { href: inAssess() ? '#/' : '#/assessment', 'aria-current': inAssess() ? 'page' : null },
      inAssess() ? 'VMs' : 'Assessment') : null,
    e.live = h('span.live-state', { role: 'status', dataset: { state: 'connecting' } }, 'connecting'),
    h('span.whoami', h('strong', app.user.name), ' ', h('span.muted', `(${app.user.role})`)),
    h('button.secondary#logout', { onclick: async () => { stopTimers(); app.els = {}; await logout(); showLogin('You have logged out.'); } }, 'Log out'));

  // Host columns the server sorts by (the others are not sortable).
  const HOST_COLS = [['Name', 'name'], ['State', 'state'], ['Group', null], ['CPUs', 'cpus'], ['Memory used', 'memory'], ['VMs', null]];
  e.hostHead = h('tr', HOST_COLS.map(([t, key]) => key
    ? h('th', h('button.sort', { dataset: { sort: key }, onclick: () => sortHosts(key) }, t))
    : h('th', t)));
  e.hostPager = pager('host', () => pageHosts(-1), () => pageHosts(1));
  e.vmCount = h('span.count#vm-count', { role: 'status' });
  e.search = h('input#vm-search', { type: 'search', placeholder: 'Name starts with…  or owner:alice', 'aria-label': 'Search VMs by name, or owner:NAME',
    maxLength: 140, title: 'A name prefix, owner:NAME for one user\'s VMs, or both', oninput: () => {
      clearTimeout(e.search._t);
      e.search._t = setTimeout(() => setVmView(parseSearch(e.search.value)), 250);
    } });
  e.stateSel = h('select#vm-state', { 'aria-label': 'State', onchange: () => setVmView({ state: e.stateSel.value }) },
    [['', 'Any state'], ['running', 'Running'], ['stopped', 'Stopped'], ['paused', 'Paused'], ['unknown', 'Unknown']].map(([v, t]) => h('option', { value: v }, t)));
  e.sortSel = h('select#vm-sort', { 'aria-label': 'Sort by', onchange: () => setVmView({ sort: e.sortSel.value }) },
    [['name', 'Name'], ['-name', 'Name (Z–A)'], ['state', 'State'], ['host', 'Host'], ['-cpus', 'Most CPUs'], ['cpus', 'Fewest CPUs'],
      ['-memory', 'Most memory'], ['memory', 'Least memory']].map(([v, t]) => h('option', { value: v }, t)));
  e.vmPager = pager('vm', () => pageVms(-1), () => pageVms(1));
  const main = h('main.content',
    e.actionbar,
    admin ? h('section.hosts-section',
      h('div.section-head', h('h3', 'Hosts'), e.hostPager),
      h('div.tablewrap', h('table.hosts', h('thead', e.hostHead), e.hosts))) : null,
    h('section.vms-section', h('div.section-head', e.title, e.vmCount),
      h('div.listbar', { role: 'search' }, e.search, e.stateSel, e.sortSel, e.vmPager), e.vms),
    e.templates);

  main.hidden = inBackups() || inAssess();
  const layout = h('div.layout' + (admin ? '' : '.portal-layout'),
    admin ? h('nav.sidebar', h('details', { open: innerWidth > 700 }, h('summary', 'Host groups'), e.tree)) : null,
    main, inBackups() ? h('main.content', backupsView(app)) : null,
    inAssess() && app.features.p2v ? h('main.content', assessView(app)) : null, e.details);
  e.jobsPager = historyPager('jobs', 'jobs');
  e.eventsPager = historyPager('events', 'events');
  const panes = h('footer.panes', h('div.tabs', jobsTab, eventsTab, e.jobsPager, e.eventsPager), e.jobs, e.events);
  e.eventsPager.hidden = true;
  clear(root).append(h('div.app', top, layout, panes), e.toast);
  app.thumbObserver = new IntersectionObserver(onThumbsSeen, { rootMargin: '100px' });
  renderActionbar();
  if (app.pendingToast) { app.toast(app.pendingToast, true); app.pendingToast = null; }
}

app.toast = (msg, isError) => {
  const t = app.els.toast;
  if (!t) return;
  t.textContent = msg;
  t.classList.toggle('error', !!isError);
  t.hidden = false;
  clearTimeout(t._timer);
  t._timer = setTimeout(() => { t.hidden = true; }, isError ? 8000 : 3500);
};

app.watchJob = job => { if (job?.id) app.watched.add(job.id); };

/* ------------------------------------------------------------------ */
/* data */

// What refresh() can re-read: the groups, the page of hosts and of VMs on
// screen (with their health), the counts, jobs, events, and the portal's
// grants.
const ALL = ['groups', 'hosts', 'vms', 'summary', 'jobs', 'events', 'portal'];

// Health (when monitoring runs) rides on the rows: health=1 asks armadad to
// add each row's badge from its newest health answer, so the page on screen
// costs a page, however large the estate (the whole tree of GET /health is
// megabytes at 20,000 VMs).
const withHealth = p => { if (app.features.health) p.set('health', '1'); return p; };

// The query of the page of VMs on screen: the selected group's subtree
// (the root stands for everything), sorted and searched by armadad.
function vmQuery() {
  const v = app.vmView, p = new URLSearchParams({ limit: VM_PAGE });
  if (v.sort !== 'name') p.set('sort', v.sort);
  if (isAdminish()) p.set('under_group_id', app.groupId);
  if (v.prefix) p.set('name_prefix', v.prefix);
  if (v.owner) p.set('owner', v.owner);
  if (v.state) p.set('state', v.state);
  if (v.cursors.at(-1)) p.set('cursor', v.cursors.at(-1));
  return withHealth(p).toString();
}
function hostQuery() {
  const v = app.hostView, p = new URLSearchParams({ limit: HOST_PAGE, under_group_id: app.groupId });
  if (v.sort !== 'name') p.set('sort', v.sort);
  if (v.cursors.at(-1)) p.set('cursor', v.cursors.at(-1));
  return withHealth(p).toString();
}
// The page of jobs or events on screen: the newest, or one further back.
function historyQuery(view, size) {
  const before = view.cursors.at(-1);
  return `limit=${size}` + (before ? `&before_id=${before}` : '');
}
const summaryPath = () => (isAdminish() && app.groupId !== 1 ? `/summary?group_id=${app.groupId}` : '/summary');
let refreshing = false;
const pending = new Set();
app.refresh = () => refresh();
// Re-reads the parts named (everything by default). Asked while a refresh
// runs, the parts wait for it and are read right after.
async function refresh(parts = ALL) {
  parts.forEach(p => pending.add(p));
  if (refreshing || !app.user || !app.els.vms || !pending.size) return;
  refreshing = true;
  const started = Date.now();
  const want = new Set(pending);
  pending.clear();
  try {
    const admin = isAdminish();
    const seesHosts = !!app.features.hosts;
    const jq = historyQuery(app.jobsView, JOBS_PAGE), eq = historyQuery(app.eventsView, EVENTS_PAGE);
    const hq = hostQuery(), vq = vmQuery();
    const [groups, hosts, vms, summary, jobs, events] = await Promise.all([
      want.has('groups') && seesHosts ? get('/host-groups') : null,
      want.has('hosts') && seesHosts && admin ? get(`/hosts?${hq}`) : null,
      want.has('vms') ? get(`/vms?${vq}`) : null,
      want.has('summary') ? get(summaryPath()).catch(() => null) : undefined,
      want.has('jobs') ? get(`/jobs?${jq}`) : null,
      want.has('events') ? get(`/events?${eq}`) : null,
    ]);
    if (!app.els.vms) return;
    if (groups) app.data.groups = groups.items;
    // A row that went after this read began is not brought back by it.
    const fresh = (kind, items) => items.filter(x => !(goneAt.get(kind + x.id) >= started));
    // A page asked for before the user moved (another group, sort, search,
    // page) is dropped and the page on screen now is read right after: its
    // cursor belongs to the other order (a 400 on Next).
    if (hosts && hq === hostQuery()) { app.data.hosts = fresh('host', hosts.items); app.hostView.next = hosts.next_cursor; }
    else if (hosts) pending.add('hosts');
    if (vms && vq === vmQuery()) { app.data.vms = fresh('vm', vms.items); app.vmView.next = vms.next_cursor; }
    else if (vms) pending.add('vms');
    if (summary !== undefined) app.data.summary = summary;
    // An answer for a page the user left meanwhile (Older, Newer) is
    // dropped: the page asked for now is read right after.
    if (jobs && jq === historyQuery(app.jobsView, JOBS_PAGE)) {
      app.data.jobs = historyPage(app.jobsView, jobs, app.data.jobs, mergeJobs, JOBS_PAGE);
    }
    if (events && eq === historyQuery(app.eventsView, EVENTS_PAGE)) {
      app.data.events = historyPage(app.eventsView, events, app.data.events, mergeEvents, EVENTS_PAGE);
    }
    render();
    if (want.has('portal') && !admin && app.features['self-service']) renderPortal(app, app.els.templates);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 401) console.warn('refresh failed', e);
  } finally {
    refreshing = false;
    if (pending.size && app.els.vms) refresh([]);
  }
}

// A burst of stream messages makes one refresh, DEBOUNCE_MS after the first.
const soon = { parts: new Set(), timer: null };
function refreshSoon(parts) {
  if (!parts.length) return;
  parts.forEach(p => soon.parts.add(p));
  if (soon.timer) return;
  soon.timer = setTimeout(() => {
    soon.timer = null;
    const p = [...soon.parts];
    soon.parts.clear();
    refresh(p);
  }, DEBOUNCE_MS);
}

// The parts a change of an object of this kind may touch.
function partsFor(kind) {
  const portal = !isAdminish() ? ['portal'] : [];
  switch (kind) {
    case 'vm': return ['vms', 'hosts', 'summary', ...portal];
    case 'host': return ['hosts', 'vms', 'summary'];
    case 'job': return ['jobs'];
    case 'cluster': case 'share': case 'template': case 'grant': return portal;
    default: return ALL.filter(p => p !== 'portal').concat(portal);
  }
}

// A list read while stream messages arrived can be older than they are: it
// must not take back what a message already showed. For each job the
// furthest state wins (queued, running, then a final one, which never goes
// back; then the higher progress); jobs and events the messages brought
// that the list does not hold yet are kept.
const JOB_RANK = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2 };
function mergeJobs(local, fetched) {
  const byId = new Map(fetched.map(j => [j.id, j]));
  for (const j of local) {
    const f = byId.get(j.id);
    if (!f) {
      if (j.live) byId.set(j.id, j);
      continue;
    }
    const rl = JOB_RANK[j.state] ?? 0, rf = JOB_RANK[f.state] ?? 0;
    if (rl > rf || (rl === rf && rl < 2 && (j.progress || 0) > (f.progress || 0))) byId.set(j.id, { ...f, ...j });
  }
  return [...byId.values()].sort((a, b) => b.id - a.id);
}
function mergeEvents(local, fetched) {
  const byId = new Map(fetched.map(e => [e.id, e]));
  for (const e of local) if (e.live && !byId.has(e.id)) byId.set(e.id, e);
  return [...byId.values()].sort((a, b) => b.id - a.id);
}

// The rows of a jobs or events page read: an older page as armadad gave it;
// the newest merged with what the stream brought meanwhile, cut to a page,
// and Older then starts below the last row shown (not the last row read,
// which the stream's rows may have pushed off the page).
function historyPage(view, answer, local, merge, size) {
  if (view.cursors.length > 1) {
    view.next = answer.next_before_id;
    return answer.items;
  }
  const all = merge(local, answer.items);
  const rows = all.slice(0, size);
  view.next = rows.length && (answer.next_before_id !== null || all.length > size) ? rows.at(-1).id : null;
  return rows;
}

// A job's change: shown at once (live progress); the lists it may touch are
// read again when its state changes, not on each step.
function onJobMessage(j) {
  if (!j || typeof j.id !== 'number' || !app.els.jobs) return;
  const list = app.data.jobs;
  const i = list.findIndex(x => x.id === j.id);
  const before = i >= 0 ? list[i] : null;
  j = { ...j, live: true };
  if (before) list[i] = { ...before, ...j };
  else if (app.jobsView.cursors.length === 1) {
    // A new job: on the newest page only (an older page keeps its rows).
    list.push(j);
    list.sort((a, b) => b.id - a.id);
    if (list.length > JOBS_PAGE) {
      list.length = JOBS_PAGE;
      app.jobsView.next = list.at(-1).id;
    }
  }
  renderJobs();
  if (!before || before.state !== j.state) {
    const final = !['queued', 'running'].includes(j.state);
    objectChanged(j.target_kind, j.target_id, j.kind, final && /\.delete$/.test(j.kind || '') && j.state === 'succeeded');
    if (final && j.state !== 'succeeded') patches.going.delete(`${j.target_kind}${j.target_id}`);
  }
}

// An event: added to the events pane at once; the lists it is about are
// read again.
function onEventMessage(ev) {
  if (!ev || typeof ev.id !== 'number' || !app.els.events) return;
  const list = app.data.events;
  if (app.eventsView.cursors.length === 1 && !list.some(x => x.id === ev.id)) {
    list.unshift({ ...ev, live: true });
    list.sort((a, b) => b.id - a.id);
    if (list.length > EVENTS_PAGE) {
      list.length = EVENTS_PAGE;
      app.eventsView.next = list.at(-1).id;
    }
    renderEvents();
  }
  if (/^alert\./.test(ev.kind || '')) healthSoon();
  objectChanged(ev.object_kind, ev.object_id, ev.kind || '', /\.deleted$/.test(ev.kind || ''));
}

// What a message about an object does to the page: a row on screen is read
// again by itself (GET /vms?name=: one row, not the list); an object that may come into or
// leave the page re-reads the page; anything else only changes the counts.
const COMES_OR_GOES = /\.(create|created|discovered|deploy|delete|deleted|missing|moved|migrate|placed|foreign|duplicate|updated)$/;
function objectChanged(kind, id, what, gone) {
  if (kind !== 'vm' && kind !== 'host') {
    if (kind === 'group') refreshSoon(['groups', 'summary']);
    else refreshSoon(partsFor(kind));
    return;
  }
  const list = kind === 'vm' ? app.data.vms : app.data.hosts;
  const onPage = list.some(x => x.id === id);
  summarySoon();
  // An object being deleted is not read again (it would be a 404): it
  // leaves the page when it is gone.
  if (/\.delete$/.test(what || '')) {
    patches[kind].delete(id);
    patches.going.add(`${kind}${id}`);
  }
  if (gone) {
    patches[kind].delete(id);
    goneAt.set(kind + id, Date.now());
    if (app.selected?.kind === kind && app.selected.id === id) app.selected = null;
    if (onPage) {
      const i = list.findIndex(x => x.id === id);
      list.splice(i, 1);
      render();
    }
    refreshSoon(kind === 'vm' ? ['vms', 'hosts'] : ['hosts']);
    return;
  }
  // A new owner under an owner filter: the row comes or goes.
  if (kind === 'vm' && app.vmView.owner && /\.updated$/.test(what || '')) refreshSoon(['vms']);
  else if (onPage && !patches.going.has(`${kind}${id}`)) patchSoon(kind, id);
  else if (COMES_OR_GOES.test(what || '')) refreshSoon(kind === 'vm' ? ['vms', 'hosts'] : ['hosts']);
  if (!isAdminish() && kind === 'vm') refreshSoon(['portal']);
}

// The counts (GET /summary): at most one read every SUMMARY_MS.
function summarySoon() {
  if (summarySoon.timer) return;
  summarySoon.timer = setTimeout(() => { summarySoon.timer = null; refresh(['summary']); }, SUMMARY_MS);
}

// Rows on screen that changed: read one by one after DEBOUNCE_MS (many at
// once: the page instead).
const patches = { vm: new Set(), host: new Set(), going: new Set(), timer: null };
// When each deleted row went ('vm12' -> ms): a list read begun before that
// may still hold it.
const goneAt = new Map();
function patchSoon(kind, id) {
  patches[kind].add(id);
  if (patches.timer) return;
  patches.timer = setTimeout(async () => {
    patches.timer = null;
    const vms = [...patches.vm], hosts = [...patches.host];
    patches.vm.clear();
    patches.host.clear();
    if (vms.length + hosts.length > PATCH_MAX) { refresh(['vms', 'hosts']); return; }
    // By name (?name=: one row found by a binary search in armadad's read
    // model, not a list): a row deleted meanwhile is an empty answer, not
    // a 404.
    const read = (kind, id) => {
      const row = (kind === 'vm' ? app.data.vms : app.data.hosts).find(x => x.id === id);
      if (!row) return Promise.resolve([kind, undefined, id]);
      const q = withHealth(new URLSearchParams({ name: row.name }));
      return get(`/${kind === 'vm' ? 'vms' : 'hosts'}?${q}`)
        .then(r => [kind, r.items.find(x => x.id === id) || null, id]).catch(() => [kind, undefined, id]);
    };
    const got = await Promise.all([...vms.map(id => read('vm', id)), ...hosts.map(id => read('host', id))]);
    if (!app.els.vms) return;
    let missing = false;
    for (const [kind, o, id] of got) {
      const list = kind === 'vm' ? app.data.vms : app.data.hosts;
      const i = list.findIndex(x => x.id === id);
      if (i < 0 || o === undefined) continue;
      if (o) list[i] = o;
      else { list.splice(i, 1); missing = true; }
    }
    render();
    if (missing) refreshSoon(['vms', 'hosts']);
  }, DEBOUNCE_MS);
}

// An alert opened or resolved: the rows on screen are read again at once,
// and once more when armadad's health answer (rebuilt at most once a second
// after a change) surely holds it.
const HEALTH_LAG_MS = 1500;
function healthSoon() {
  refreshSoon(['vms', 'hosts']);
  clearTimeout(healthSoon.timer);
  healthSoon.timer = setTimeout(() => refresh(['vms', 'hosts']), HEALTH_LAG_MS);
}

// The pages on screen: armadad chose them (group, sort, search).
function visible() {
  return { hosts: isAdminish() ? app.data.hosts : [], vms: app.data.vms };
}

/* ------------------------------------------------------------------ */
/* paging, sorting, searching */

function pager(kind, prev, next) {
  return h(`div.pager#${kind}-pager`,
    h(`button.secondary#${kind}-prev`, { onclick: prev, 'aria-label': 'Previous page' }, '‹'),
    h('span.page-label'),
    h(`button.secondary#${kind}-next`, { onclick: next, 'aria-label': 'Next page' }, '›'));
}

function pageVms(dir) {
  const v = app.vmView;
  if (dir > 0 && v.next) v.cursors.push(v.next);
  else if (dir < 0 && v.cursors.length > 1) v.cursors.pop();
  else return;
  refresh(['vms']);
}

function pageHosts(dir) {
  const v = app.hostView;
  if (dir > 0 && v.next) v.cursors.push(v.next);
  else if (dir < 0 && v.cursors.length > 1) v.cursors.pop();
  else return;
  refresh(['hosts']);
}

function sortHosts(key) {
  const v = app.hostView;
  v.sort = v.sort === key ? '-' + key : key;
  v.cursors = [null];
  refresh(['hosts']);
}

// The search box: a name prefix and/or owner:NAME (in any order).
function parseSearch(text) {
  let owner = '';
  const rest = text.replace(/(^|\s)owner:(\S*)/g, (_, sp, name) => { owner = name; return sp; });
  return { prefix: rest.trim(), owner: owner.slice(0, 64) };
}

// Jobs and events: Older pushes the answer's next_before_id, Newer pops.
function historyPager(kind, label) {
  const view = () => (kind === 'jobs' ? app.jobsView : app.eventsView);
  const go = dir => {
    const v = view();
    if (dir > 0 && v.next) v.cursors.push(v.next);
    else if (dir < 0 && v.cursors.length > 1) v.cursors.pop();
    else return;
    refresh([kind]);
  };
  return h(`div.pager.history#${kind}-pager`,
    h(`button.secondary#${kind}-newer`, { onclick: () => go(-1), 'aria-label': `Newer ${label}` }, '‹ Newer'),
    h('span.page-label'),
    h(`button.secondary#${kind}-more`, { onclick: () => go(1), 'aria-label': `Older ${label}` }, 'Older ›'));
}

function renderHistoryPager(el, view, n, size) {
  if (!el) return;
  const from = (view.cursors.length - 1) * size;
  el.querySelector('button[id$="-newer"]').disabled = view.cursors.length <= 1;
  el.querySelector('button[id$="-more"]').disabled = !view.next;
  el.querySelector('.page-label').textContent = view.cursors.length === 1 ? 'newest' : n ? `${from + 1}–${from + n}` : '–';
}

function setVmView(changes) {
  const v = app.vmView;
  if (changes.prefix !== undefined) changes.prefix = changes.prefix.replace(/[^A-Za-z0-9._-]/g, '').slice(0, 63);
  Object.assign(v, changes);
  v.cursors = [null];
  refresh(['vms']);
}

function selectGroup(id) {
  app.groupId = id;
  app.selected = null;
  app.vmView.cursors = [null];
  app.hostView.cursors = [null];
  render();
  refresh(['hosts', 'vms', 'summary']);
}

function renderPagers() {
  const e = app.els;
  const label = (view, n, size) => {
    const from = (view.cursors.length - 1) * size;
    return n ? `${from + 1}–${from + n}` : '–';
  };
  const sum = app.data.summary;
  for (const [kind, view, n, size, total] of [['vm', app.vmView, app.data.vms.length, VM_PAGE, null],
    ['host', app.hostView, app.data.hosts.length, HOST_PAGE, sum?.hosts?.total]]) {
    const el = kind === 'vm' ? e.vmPager : e.hostPager;
    if (!el) continue;
    el.querySelector(`#${kind}-prev`).disabled = view.cursors.length <= 1;
    el.querySelector(`#${kind}-next`).disabled = !view.next;
    el.querySelector('.page-label').textContent = label(view, n, size) + (total !== null && total !== undefined ? ` of ${total}` : '');
  }
  if (e.hostHead) {
    for (const b of e.hostHead.querySelectorAll('button.sort')) {
      const k = b.dataset.sort, s = app.hostView.sort;
      b.dataset.dir = s === k ? 'asc' : s === '-' + k ? 'desc' : '';
      b.parentElement.setAttribute('aria-sort', s === k ? 'ascending' : s === '-' + k ? 'descending' : 'none');
    }
  }
  if (e.vmCount) {
    const v = sum?.vms;
    e.vmCount.textContent = v ? `${v.total} VM${v.total === 1 ? '' : 's'}` + Object.entries(v.by_state).map(([k, n]) => ` · ${n} ${k}`).join('') : '';
    e.vmCount.dataset.total = v ? String(v.total) : '';
  }
  if (e.sortSel && e.sortSel.value !== app.vmView.sort) e.sortSel.value = app.vmView.sort;
  if (e.stateSel && e.stateSel.value !== app.vmView.state) e.stateSel.value = app.vmView.state;
}

function render() {
  const admin = isAdminish();
  if (admin) renderTree();
  const { hosts, vms } = visible();
  if (admin) renderHosts(hosts);
  const g = app.data.groups.find(x => x.id === app.groupId);
  app.els.title.textContent = admin ? `Virtual machines — ${g ? g.path : 'All Hosts'}` : 'My virtual machines';
  renderVms(vms);
  renderPagers();
  renderActionbar();
  renderDetails();
  renderJobs();
  renderEvents();
}

/* ------------------------------------------------------------------ */
/* tree, hosts, VMs */

function renderTree() {
  const groups = app.data.groups;
  const kids = new Map();
  for (const g of groups) {
    if (g.id === 1) continue;
    const p = g.parent_id || 1;
    if (!kids.has(p)) kids.set(p, []);
    kids.get(p).push(g);
  }
  // From GET /summary: the hosts in each group and below it.
  const hostCount = id => app.data.summary?.groups?.[id]?.hosts ?? '';
  const node = (id, name) => {
    const children = (kids.get(id) || []).sort((a, b) => a.name.localeCompare(b.name));
    return h('li', { role: 'treeitem' },
      h('button.tree-node', {
        class: 'tree-node' + (id === app.groupId ? ' selected' : ''), dataset: { groupId: id },
        onclick: () => selectGroup(id),
      }, h('span.folder', '▸'), ' ', name, ' ', h('span.count', String(hostCount(id)))),
      children.length ? h('ul', { role: 'group' }, children.map(c => node(c.id, c.name))) : null);
  };
  clear(app.els.tree).append(node(1, 'All Hosts'));
}

function renderHosts(hosts) {
  const tb = clear(app.els.hosts);
  if (!hosts.length) tb.append(h('tr', h('td.muted', { colSpan: 6 }, 'No hosts in this group.')));
  for (const x of hosts) {
    // free_memory_mib is 0 when the driver cannot tell (libvirt's test driver).
    const used = x.memory_mib && x.free_memory_mib ? x.memory_mib - x.free_memory_mib : null;
    const pct = used !== null && x.memory_mib ? Math.round(100 * used / x.memory_mib) : null;
    const sel = app.selected?.kind === 'host' && app.selected.id === x.id;
    tb.append(h('tr.host-row', {
      class: 'host-row' + (sel ? ' selected' : ''), dataset: { name: x.name, state: x.state },
      onclick: () => select('host', x.id), oncontextmenu: ev => hostMenu(ev, x),
    },
    h('td', h('strong', x.name)), h('td', stateBadge(x.state), x.health ? h('span.health', { dataset: { health: x.health }, title: (x.health_reasons || []).join('; ') }, x.health) : null),
    h('td', x.group_path || ''), h('td', x.cpus ?? '–'),
    h('td', pct === null ? mib(x.memory_mib) : h('span.meter', { title: `${mib(used)} of ${mib(x.memory_mib)}` }, h('span.fill', { style: { width: pct + '%' } }), h('span.label', `${pct}% of ${mib(x.memory_mib)}`))),
    h('td', x.n_vms ?? '')));
  }
}

// Thumbnails: only for cards on screen (an IntersectionObserver marks
// them), asked one at a time, THUMB_GAP_MS apart at least, each refreshed
// every THUMB_MS while it shows (a VM without a picture: THUMB_BLANK_MS).
const thumbQueue = [];
let thumbPumping = false;
const shows = t => t.state === 'running' || t.state === 'paused';

function thumbFor(vm) {
  let t = app.thumbs.get(vm.id);
  if (!t) {
    t = { id: vm.id, img: h('img.thumb', { alt: `Screen of ${vm.name}`, width: 160, height: 120, dataset: { live: '0' } }), url: null,
      busy: false, state: null, seen: false, at: 0, blank: false };
    t.img._thumb = t;
    app.thumbs.set(vm.id, t);
    app.thumbObserver?.observe(t.img);
  }
  if (t.state !== vm.state) {
    t.state = vm.state;
    t.at = 0;
    t.blank = false;
    if (shows(t)) queueThumb(t);
    else blankThumb(t);
  }
  return t.img;
}

function onThumbsSeen(entries) {
  for (const en of entries) {
    const t = en.target._thumb;
    if (!t) continue;
    t.seen = en.isIntersecting;
    if (t.seen) queueThumb(t);
  }
}

function queueThumb(t) {
  if (!t.seen || !shows(t) || t.busy || thumbQueue.includes(t)) return;
  if (Date.now() - t.at < (t.blank ? THUMB_BLANK_MS : THUMB_MS)) return;
  thumbQueue.push(t);
  pumpThumbs();
}

async function pumpThumbs() {
  if (thumbPumping) return;
  thumbPumping = true;
  try {
    while (thumbQueue.length && app.els.vms) {
      const t = thumbQueue.shift();
      if (!t.img.isConnected || !t.seen || !shows(t)) continue;
      await loadThumb(t.id, t);
      await new Promise(r => setTimeout(r, THUMB_GAP_MS));
    }
  } finally {
    thumbPumping = false;
  }
}

function blankThumb(t) {
  if (t.url) URL.revokeObjectURL(t.url);
  t.url = null;
  t.img.removeAttribute('src');
  t.img.dataset.live = '0';
}

async function loadThumb(id, t) {
  if (t.busy) return;
  t.busy = true;
  t.at = Date.now();
  try {
    const r = await apiFetch(`/vms/${id}/thumbnail`);
    if (r.status === 200) {
      const url = URL.createObjectURL(await r.blob());
      if (t.url) URL.revokeObjectURL(t.url);
      t.url = url;
      t.img.src = url;
      t.blank = false;
      t.img.dataset.live = '1';
      t.img.dataset.loadedAt = String(Date.now());
    } else if (r.status === 204) {
      blankThumb(t);
      t.blank = true;
    } else if (r.status === 401) {
      showLogin('Your session has ended. Log in again.');
    }
  } catch (e) { /* keep the last picture */ } finally {
    t.busy = false;
  }
}

function refreshThumbs() {
  for (const t of app.thumbs.values()) if (t.img.isConnected) queueThumb(t);
}

// Pictures of VMs no longer on the page are dropped (the page holds the rest).
function dropThumbs(keep) {
  for (const [id, t] of app.thumbs) {
    if (keep.has(id)) continue;
    app.thumbObserver?.unobserve(t.img);
    if (t.url) URL.revokeObjectURL(t.url);
    app.thumbs.delete(id);
  }
}

function renderVms(vms) {
  const grid = clear(app.els.vms);
  dropThumbs(new Set(vms.map(v => v.id)));
  const searching = app.vmView.prefix || app.vmView.owner || app.vmView.state;
  if (!vms.length) grid.append(h('p.muted.empty', searching ? 'No VM matches the search.' : isAdminish() ? 'No VMs here yet. Create one with “+ New VM”.' : 'You have no VMs yet.'));
  for (const vm of vms) {
    const sel = app.selected?.kind === 'vm' && app.selected.id === vm.id;
    grid.append(h('div.vm-card', {
      class: 'vm-card' + (sel ? ' selected' : ''), tabIndex: 0, dataset: { name: vm.name, state: vm.state, id: vm.id },
      onclick: () => select('vm', vm.id), oncontextmenu: ev => vmMenu(ev, vm),
      onkeydown: ev => { if (ev.key === 'Enter') select('vm', vm.id); if (ev.key === 'ContextMenu') vmMenu(ev, vm); },
      ondblclick: () => { if (vm.state === 'running' && vm.origin !== 'foreign' && app.features.console) location.hash = `#/console/${vm.id}`; },
    },
    h('div.thumbbox', { dataset: { state: vm.state } }, thumbFor(vm), h('span.thumb-state', vm.state)),
    h('div.vm-meta',
      h('div.vm-name', vm.name),
      h('div', stateBadge(vm.state), vm.health ? h('span.health', { dataset: { health: vm.health }, title: (vm.health_reasons || []).join('; ') }, vm.health) : null),
      h('div.muted', `${vm.cpus} vCPU · ${mib(vm.memory_mib)}`),
      h('div.muted', vm.host_name ? `on ${vm.host_name}` : 'not placed', isAdminish() && vm.owner_name ? ` · ${vm.owner_name}` : '',
        vm.origin === 'foreign' ? ' · another installation\'s (read-only)' : ''))));
  }
}

function select(kind, id) {
  app.selected = { kind, id };
  render();
}

function selectedVm() {
  return app.selected?.kind === 'vm' ? app.data.vms.find(v => v.id === app.selected.id) : null;
}
function selectedHost() {
  return app.selected?.kind === 'host' ? app.data.hosts.find(v => v.id === app.selected.id) : null;
}

/* ------------------------------------------------------------------ */
/* actions */

function vmActionsFor(vm) {
  return VM_ACTIONS.filter(a => !a.feature || app.features[a.feature]).map(a => ({
    // Another Armada installation's VM is shown read-only (the server refuses with 409 anyway).
    id: a.id, label: a.label, danger: a.danger, disabled: vm.origin === 'foreign' || !a.when(vm.state), onclick: () => doVm(vm, a.id),
  }));
}

async function doVm(vm, action) {
  try {
    const job = await runVmAction(app, vm, action);
    if (job) {
      app.watchJob(job);
      app.toast(`${action[0].toUpperCase() + action.slice(1)} '${vm.name}': job ${job.id} started.`);
    }
    refresh();
  } catch (e) {
    app.toast(e.message, true);
  }
}

async function doHost(host, action) {
  try {
    const job = await runHostAction(app, host, action);
    if (job) app.watchJob(job);
    refresh();
  } catch (e) {
    app.toast(e.message, true);
  }
}

function hostActionsFor(x) {
  const items = [];
  if (app.features['operate-host']) items.push({ id: 'refresh', label: 'Refresh', onclick: () => doHost(x, 'refresh') });
  if (app.features.maintenance) {
    items.push({ id: 'maintenance', label: x.state === 'maintenance' ? 'Leave maintenance' : 'Start maintenance', onclick: () => doHost(x, 'maintenance') });
  }
  return items;
}

function vmMenu(ev, vm) {
  ev.preventDefault();
  app.selected = { kind: 'vm', id: vm.id };
  render();
  const r = ev.clientX !== undefined && ev.clientX ? { x: ev.clientX, y: ev.clientY } : (() => { const b = ev.target.getBoundingClientRect(); return { x: b.left + 20, y: b.top + 20 }; })();
  showMenu(r.x, r.y, vm.name, vmActionsFor(vm));
}

function hostMenu(ev, x) {
  ev.preventDefault();
  showMenu(ev.clientX, ev.clientY, x.name, hostActionsFor(x));
}

function renderActionbar() {
  const bar = app.els.actionbar;
  if (!bar) return;
  clear(bar);
  const vm = selectedVm(), host = selectedHost();
  if (vm) {
    bar.append(h('span.target', vm.name));
    for (const a of vmActionsFor(vm)) bar.append(h('button.action', { disabled: a.disabled, class: 'action' + (a.danger ? ' danger' : ''), dataset: { action: a.id }, onclick: a.onclick }, a.label));
  } else if (host) {
    bar.append(h('span.target', host.name));
    for (const a of hostActionsFor(host)) bar.append(h('button.action', { dataset: { action: a.id }, onclick: a.onclick }, a.label));
  } else {
    bar.append(h('span.muted', 'Select a VM or a host (or right-click it) to act on it.'));
  }
}

/* ------------------------------------------------------------------ */
/* details */

let chartKey = null, chartAt = 0;
const CHART_MS = 10000;
function renderDetails() {
  const d = app.els.details;
  const vm = selectedVm(), host = selectedHost();
  if (!vm && !host) { d.hidden = true; chartKey = null; ownerKey = null; return; }
  d.hidden = false;
  const key = vm ? `vm${vm.id}` : `host${host.id}`;
  const chart = chartKey === key && d.querySelector('.chart') ? d.querySelector('.chart') : h('div.chart', { hidden: true });
  clear(d);
  const close = h('button.close', { 'aria-label': 'Close', onclick: () => { app.selected = null; render(); } }, '×');
  if (vm) {
    const rows = [['State', vm.state], ['Host', vm.host_name || '–'], ['vCPUs', vm.cpus], ['Memory', mib(vm.memory_mib)],
      ['Disks', (vm.disks || []).map(x => x.target).join(', ') || '–'], ['Owner', vm.owner_name || '–'], ['Type', vm.domain_type || '–'],
      ['UUID', vm.uuid]];
    if (vm.health) rows.splice(1, 0, ['Health', [vm.health, ...(vm.health_reasons || [])].join(' — ')]);
    d.append(...[close, h('h3', vm.name),
      vm.state === 'running' && app.features.console ? h('button.primary.console-btn', { onclick: () => { location.hash = `#/console/${vm.id}`; } }, 'Open console') : null,
      h('dl', rows.map(([k, v]) => [h('dt', k), h('dd', String(v))])),
      vm.description ? h('p.muted', vm.description) : null, ownerForm(vm, key), snapshotsPanel(app, vm, () => render()),
      backupsPanel(app, vm, () => render()), chart].filter(Boolean));
  } else {
    const rows = [['State', host.state], ['Group', host.group_path], ['URI', host.uri], ['Hostname', host.hostname || '–'],
      ['CPUs', host.cpus ?? '–'], ['Memory', mib(host.memory_mib)], ['Free memory', mib(host.free_memory_mib)], ['Driver', host.hv_driver || '–'],
      ['VMs', host.n_vms ?? 0]];
    if (host.state_reason) rows.push(['Why', host.state_reason]);
    if (host.health) rows.splice(1, 0, ['Health', [host.health, ...(host.health_reasons || [])].join(' — ')]);
    d.append(close, h('h3', host.name), h('dl', rows.map(([k, v]) => [h('dt', k), h('dd', String(v))])), chart);
  }
  if (chartKey !== key || Date.now() - chartAt > CHART_MS) {
    chartKey = key;
    chartAt = Date.now();
    renderChart(chart, vm ? 'vm' : 'host', vm ? vm.id : host.id, app.features.metrics);
  }
}

// Who owns the VM (PATCH /vms/{id}): for those who may change VMs. Kept
// across renders of the same VM, as the chart is, so that typing survives
// the stream's updates.
let ownerKey = null, ownerEl = null;
function ownerForm(vm, key) {
  if (!app.features['change-vm'] || vm.origin === 'foreign') return null;
  if (ownerKey === key && ownerEl) return ownerEl;
  const input = h('input#owner-input', { name: 'owner', placeholder: 'User name', 'aria-label': 'Owner', maxLength: 64,
    value: vm.owner_name || '', autocomplete: 'off', list: app.features.users ? 'owner-users' : null,
    onfocus: () => loadUsers(list) });
  const list = app.features.users ? h('datalist#owner-users') : null;
  const set = async owner => {
    try {
      const v = await api('PATCH', `/vms/${vm.id}`, { owner });
      const i = app.data.vms.findIndex(x => x.id === v.id);
      if (i >= 0) app.data.vms[i] = { ...app.data.vms[i], ...v };
      input.value = v.owner_name || '';
      app.toast(v.owner_name ? `VM '${v.name}' now belongs to '${v.owner_name}'.` : `VM '${v.name}' has no owner now.`);
      render();
      if (app.vmView.owner) refresh(['vms']);
    } catch (e) {
      app.toast(e.message, true);
    }
  };
  ownerKey = key;
  ownerEl = h('form.owner-form#owner-form', { onsubmit: e => { e.preventDefault(); set(input.value.trim() || null); } },
    h('label', 'Owner ', input), list,
    h('button.secondary#owner-set', { type: 'submit' }, 'Set owner'),
    h('button.secondary#owner-clear', { type: 'button', onclick: () => set(null) }, 'No owner'));
  return ownerEl;
}

async function loadUsers(list) {
  if (!list || list.childElementCount) return;
  try {
    const users = await get('/users');
    list.append(...users.items.map(u => h('option', { value: u.name }, u.role)));
  } catch (e) { /* typing still works */ }
}

/* ------------------------------------------------------------------ */
/* jobs and events */

function renderJobs() {
  renderHistoryPager(app.els.jobsPager, app.jobsView, app.data.jobs.length, JOBS_PAGE);
  const ul = clear(app.els.jobs);
  if (!app.data.jobs.length) ul.append(h('li.muted', 'No jobs yet.'));
  for (const j of app.data.jobs) {
    const pct = j.state === 'succeeded' ? 100 : j.progress || 0;
    ul.append(h('li.job', { dataset: { id: j.id, state: j.state, kind: j.kind, target: j.target_name || '' }, class: 'job' + (app.watched.has(j.id) ? ' mine' : '') },
      h('span.job-kind', j.kind), h('span.job-target', j.target_name || ''),
      h('span.progress', { role: 'progressbar', 'aria-valuenow': pct, 'aria-valuemin': 0, 'aria-valuemax': 100 }, h('span.fill', { style: { width: pct + '%' } })),
      stateBadge(j.state),
      h('span.job-step.muted', j.error || j.step || ''),
      h('span.job-time.muted', ago(j.finished_at || j.started_at || j.created_at))));
    if (app.watched.has(j.id) && !['queued', 'running'].includes(j.state)) {
      app.watched.delete(j.id);
      if (j.state === 'failed') app.toast(`Job ${j.id} (${j.kind} '${j.target_name}') failed: ${j.error}`, true);
      else app.toast(`Job ${j.id} (${j.kind} '${j.target_name}') ${j.state}.`);
    }
  }
}

function renderEvents() {
  renderHistoryPager(app.els.eventsPager, app.eventsView, app.data.events.length, EVENTS_PAGE);
  const ul = clear(app.els.events);
  if (!app.data.events.length) ul.append(h('li.muted', 'No events yet.'));
  for (const ev of app.data.events) {
    ul.append(h('li.event', { dataset: { severity: ev.severity, id: ev.id } },
      h('span.sev', ev.severity), h('span.ev-time.muted', ago(ev.at || ev.created_at)), h('span.ev-msg', ev.message)));
  }
}

/* ------------------------------------------------------------------ */
/* host picker (migration) */

app.pickHost = (title, vm) => new Promise(resolve => {
  const hosts = app.data.hosts.filter(x => x.state === 'ok' && x.id !== vm.host_id);
  let chosen = null;
  const done = v => { overlay.remove(); resolve(v); };
  const form = h('form.wizard', { onsubmit: e => { e.preventDefault(); done(chosen); } },
    h('h2', title),
    h('div.hostpick',
      h('label.hostopt.auto', h('input', { type: 'radio', name: 'host', checked: true, onchange: () => { chosen = null; } }), h('span.hname', 'Let Armada choose')),
      hosts.map(x => h('label.hostopt', h('input', { type: 'radio', name: 'host', onchange: () => { chosen = x; } }), h('span.hname', x.name), h('span.muted', x.group_path || '')))),
    h('div.buttons', h('button.secondary', { type: 'button', onclick: () => done(undefined) }, 'Cancel'), h('button.primary', { type: 'submit' }, 'Migrate')));
  const overlay = h('div.overlay', form);
  document.body.append(overlay);
});

/* ------------------------------------------------------------------ */

(async function boot() {
  // Without a session cookie there is nothing to ask (and no 401 to log).
  if (!hasSession()) { showLogin(''); return; }
  try {
    const r = await get('/sessions/current', { quiet401: true });
    app.user = r.user;
    app.features = featureSet(r.features);
    start();
  } catch (e) {
    showLogin('');
  }
})();
