// Backups in the console (issue 11), calling the existing API only:
//  - the Backups view (#/backups): for administrators (feature
//    "datastores") the datastores with their usage as the last job counted
//    it (GET /datastores: used, logical, dedup factor, points, last verify)
//    and buttons to verify and collect garbage (jobs: the jobs pane shows
//    them); for everyone the recovery points of the VMs they may see (GET
//    /backups, newest first), a page at a time;
//  - a VM's "Backups" panel in its details: its last good point (GET
//    /vms/{id}'s last_backup), "Back up now" (a datastore to choose when
//    there are several), its points with "Restore as…";
//  - "Files" on a point (both places): a browser of the point's file
//    systems and directories (GET /backups/files), a file downloaded by a
//    plain link to GET /backups/download (the session cookie; streamed by
//    the browser, never held by the page). The first listing of a point
//    boots the server's appliance: it says so while it waits.
// The server decides in the end; the buttons follow the session's features.
import { h, clear, bytes, ago } from './dom.js';
import { get, post } from './api.js';

const TTL_MS = 10000;
const PAGE = 20;
const PANEL_POINTS = 5;

const kind = p => (p.full ? 'full' : 'incremental');
// A point's own time, from its id (YYYYMMDDTHHMMSSZ, UTC).
function pointTime(id) {
  const m = /^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$/.exec(id || '');
  return m ? `${m[1]}-${m[2]}-${m[3]} ${m[4]}:${m[5]}:${m[6]} UTC` : id;
}
const mayRestore = app => !!(app.features['create-vm'] || app.features['self-service']);

// The datastores' names, for the "Back up now" choice (administrators only:
// others back up into the only datastore).
let dsNames = { at: 0, list: null, loading: false };
async function loadDsNames(app, rerender) {
  if (!app.features.datastores || dsNames.loading || Date.now() - dsNames.at < 30000) return;
  dsNames.loading = true;
  try {
    dsNames.list = (await get('/datastores')).items.map(d => d.name);
  } catch (e) {
    dsNames.list = null;
  }
  Object.assign(dsNames, { at: Date.now(), loading: false });
  rerender();
}

async function restoreAs(app, p, after) {
  const name = prompt(`Restore '${p.vm_name}' as it was at ${pointTime(p.point_id)} into a new VM.\nName of the new VM:`, `${p.vm_name}-restored`);
  if (name === null || !name.trim()) return;
  try {
    const r = await post('/backups/restore', { vm: p.vm_uuid, point: p.point_id, datastore: p.datastore, as: name.trim() });
    app.watchJob(r.job);
    app.toast(`Restore of '${p.vm_name}' as '${name.trim()}': job ${r.job.id} started.`);
    after?.();
  } catch (e) {
    app.toast(e.message, true);
  }
}

/* ------------------------------------------------------------------ */
/* file-level restore: a browser in a box of its own (the Backups view's,
   or the VM panel's), a later listing winning over one still on its way */

function filesQuery(p, path, disk) {
  const q = new URLSearchParams({ vm: p.vm_uuid, point: p.point_id, datastore: p.datastore, path });
  if (disk) q.set('disk', disk);
  return q.toString();
}

// Shows directory path of point p (at '/' its file systems), replacing what
// the box showed; a later call wins over a listing still on its way.
async function browse(box, p, path, disk) {
  const seq = box.filesSeq = (box.filesSeq || 0) + 1;
  const diskIn = h('input.files-disk', { value: disk || '', placeholder: 'first disk', size: 6, 'aria-label': 'Disk' });
  const head = h('div.section-head',
    h('h3', `Files of '${p.vm_name}' at ${pointTime(p.point_id)}`),
    h('label.muted', ' disk ', diskIn),
    h('button.secondary.files-go', { onclick: () => browse(box, p, '/', diskIn.value.trim()) }, 'Open'),
    h('button.secondary.files-close', { onclick: () => { box.filesSeq++; clear(box); } }, 'Close'));
  const crumbs = [h('a.files-crumb', { href: '#', onclick: e => { e.preventDefault(); browse(box, p, '/', disk); } }, '/')];
  let at = '';
  for (const seg of path.split('/').filter(Boolean)) {
    at += '/' + seg;
    const to = at;
    crumbs.push(h('span', ' / '), h('a.files-crumb', { href: '#', onclick: e => { e.preventDefault(); browse(box, p, to, disk); } }, seg));
  }
  clear(box).append(head, h('p.files-path', crumbs),
    h('p.muted.files-loading', 'Reading the point… (its first listing starts an appliance on the server: up to a minute or more)'));
  let r;
  try {
    r = await get('/backups/files?' + filesQuery(p, path, disk));
  } catch (e) {
    if (seq === box.filesSeq) clear(box).append(head, h('p.files-path', crumbs), h('p.error.files-error', { role: 'alert' }, e.message));
    return;
  }
  if (seq !== box.filesSeq) return;
  const top = r.path === '/';
  const join = name => (r.path === '/' ? '' : r.path) + '/' + name;
  const rows = r.items.map(e => {
    const open = e.type === 'directory' || e.type === 'filesystem';
    const name = open ? h('a.files-dir', { href: '#', onclick: ev => { ev.preventDefault(); browse(box, p, join(e.name), disk); } }, e.name + (top ? '' : '/'))
      : e.name;
    const dl = e.type === 'file'
      ? h('a.action.files-download', { href: '/api/v1/backups/download?' + filesQuery(p, join(e.name), disk), download: e.name }, 'Download')
      : null;
    return h('tr.file-row', { dataset: { name: e.name, type: e.type } },
      h('td', name), h('td', top ? e.fstype : e.type), h('td', e.size == null ? '–' : bytes(e.size)),
      h('td.muted', e.mtime ? new Date(e.mtime * 1000).toLocaleString() : ''), h('td', dl));
  });
  clear(box).append(head, h('p.files-path', crumbs),
    rows.length ? h('div.tablewrap', h('table.files',
      h('thead', h('tr', [top ? 'File system' : 'Name', top ? 'Type' : 'Kind', 'Size', 'Modified', ''].map(t => h('th', t)))),
      h('tbody', rows))) : h('p.muted', top ? 'No file system found on this disk.' : 'This directory is empty.'),
    r.truncated ? h('p.muted', `Only the first ${r.items.length} entries.`) : null);
}

function filesButton(p, box) {
  return h('button.action', { dataset: { action: 'files' }, onclick: () => {
    browse(box, p, '/', '');
    box.scrollIntoView?.({ block: 'nearest' });
  } }, 'Files');
}

/* ------------------------------------------------------------------ */
/* the VM's panel *//* ------------------------------------------------------------------ */
/* the VM's panel */

const cache = { id: null, at: 0, last: undefined, points: null, error: null, loading: false, job: null, failure: null };

async function load(vm, rerender) {
  Object.assign(cache, { id: vm.id, at: Date.now(), loading: true });
  try {
    const [full, pts] = await Promise.all([get(`/vms/${vm.id}`), get(`/backups?vm=${encodeURIComponent(vm.uuid)}`)]);
    if (cache.id === vm.id) Object.assign(cache, { last: full.last_backup ?? null, points: pts.items, error: null });
  } catch (e) {
    if (cache.id === vm.id) Object.assign(cache, { last: undefined, points: null, error: e.message });
  }
  cache.loading = false;
  rerender();
}

async function backupNow(app, vm, ds, rerender) {
  cache.failure = null;
  try {
    const r = await post(`/vms/${vm.id}/backups`, ds ? { datastore: ds } : {});
    app.watchJob(r.job);
    cache.job = r.job.id;
    app.toast(`Backup of '${vm.name}': job ${r.job.id} started.`);
  } catch (e) {
    cache.failure = e.message;
    app.toast(e.message, true);
  }
  rerender();
}

// Follows the backup job started here: its failure is said in the panel
// (the jobs pane and a toast say it too); its end reads the points again.
function followJob(app, rerender) {
  if (!cache.job) return;
  const j = app.data.jobs.find(x => x.id === cache.job);
  if (j && !['queued', 'running'].includes(j.state)) {
    if (j.state !== 'succeeded') cache.failure = `The backup failed: ${j.error || j.state}`;
    cache.job = null;
    cache.at = 0;
    return;
  }
  clearTimeout(cache.timer);
  cache.timer = setTimeout(rerender, 1000);
}

// The newest finished job that may change points (a backup, a restore, a
// datastore's maintenance) among those the jobs pane holds: the panel reads
// its lists again when it changes.
const POINT_JOBS = /^(vm\.backup|vm\.restore|datastore\.)/;
const pointsMark = app => Math.max(0, ...app.data.jobs
  .filter(j => POINT_JOBS.test(j.kind || '') && !['queued', 'running'].includes(j.state)).map(j => j.id));

// Makes the panel read again at its next render (the Backups view calls it
// when it reads its lists).
export function backupsChanged() { cache.at = 0; }

export function backupsPanel(app, vm, rerender) {
  if (cache.id !== vm.id) {
    clearTimeout(cache.timer);
    Object.assign(cache, { last: undefined, points: null, error: null, job: null, failure: null });
  }
  // The panel's file browser lives across its renders, one per VM.
  if (!cache.filesBox || cache.filesBox.dataset.vmId !== String(vm.id))
    cache.filesBox = h('div.files-box', { dataset: { vmId: vm.id } });
  followJob(app, rerender);
  const mark = pointsMark(app);
  if (mark !== cache.mark) Object.assign(cache, { mark, at: 0 });
  const stale = cache.id !== vm.id || Date.now() - cache.at > TTL_MS;
  if (stale && !cache.loading) load(vm, rerender);
  const may = app.features['operate-vm'] && vm.origin !== 'foreign' && !['creating', 'deleting'].includes(vm.state);
  if (may) loadDsNames(app, rerender);
  const lb = cache.last;
  const lastLine = lb === undefined ? null
    : lb === null ? h('p.muted.last-backup', 'No backup yet.')
      : h('p.last-backup', { dataset: { point: lb.point_id } }, 'Last good point: ', h('strong', pointTime(lb.point_id)),
        h('span.muted', ` · ${lb.datastore} · ${kind(lb)} · ${lb.consistency}-consistent` +
          (lb.last_verified ? ` · verified ${ago(lb.last_verified.at)}` : ' · not verified yet')));
  let sel = null;
  if (may && dsNames.list && dsNames.list.length > 1)
    sel = h('select#backup-ds', { 'aria-label': 'Datastore' }, dsNames.list.map(n => h('option', { value: n }, n)));
  const pts = cache.points || [];
  const rows = pts.slice(0, PANEL_POINTS).map(p => h('li.backup-point', { dataset: { point: p.point_id, datastore: p.datastore } },
    h('span.point-time', pointTime(p.point_id)),
    h('span.muted', ` ${p.datastore} · ${kind(p)} · ${bytes(p.size_bytes)}`),
    mayRestore(app) ? h('button.action', { dataset: { action: 'restore' }, onclick: () => restoreAs(app, p) }, 'Restore as…') : null,
    app.features['operate-vm'] ? filesButton(p, cache.filesBox) : null));
  return h('div.backups', { dataset: { vmId: vm.id } },
    h('h4', `Backups (${cache.points ? pts.length : '…'})`, sel,
      may ? h('button.action#backup-now', { dataset: { action: 'backup' }, onclick: () => backupNow(app, vm, sel?.value, rerender) }, 'Back up now') : null),
    cache.failure ? h('p.error.backup-error', { role: 'alert' }, cache.failure) : null,
    cache.job ? h('p.muted.backup-running', `Backup job ${cache.job} is running…`) : null,
    cache.error ? h('p.muted', cache.error) : lastLine,
    rows.length ? h('ul.backup-list', rows) : null,
    pts.length > PANEL_POINTS ? h('p.muted', h('a', { href: '#/backups' }, `All ${pts.length} points in Backups`)) : null,
    cache.filesBox);
}

/* ------------------------------------------------------------------ */
/* the Backups view */

async function dsAction(app, d, action, reload) {
  try {
    const r = await post(`/datastores/${d.id}/actions/${action}`);
    app.watchJob(r.job);
    app.toast(`${action === 'gc' ? 'Garbage collection' : 'Verify'} of '${d.name}': job ${r.job.id} started.`);
    reload();
  } catch (e) {
    app.toast(e.message, true);
  }
}

function renderDatastores(app, box, list, reload) {
  clear(box);
  if (!list.length) return box.append(h('p.muted', 'No datastore yet (armada backup datastore add NAME --path DIR).'));
  const num = (d, k) => d.usage ? d.usage[k] : null;
  box.append(h('div.tablewrap', h('table.datastores',
    h('thead', h('tr', ['Name', 'Path', 'Used', 'Logical', 'Dedup', 'Points', 'Last verify', ''].map(t => h('th', t)))),
    h('tbody', list.map(d => h('tr.datastore-row', { dataset: { name: d.name, id: d.id } },
      h('td', d.name), h('td.muted', d.path),
      h('td.ds-used', d.usage ? bytes(num(d, 'stored_bytes')) : '–'),
      h('td', d.usage ? bytes(num(d, 'logical_bytes')) : '–'),
      h('td.ds-dedup', d.usage ? `${num(d, 'dedup_factor').toFixed(2)}×` : '–'),
      h('td.ds-points', d.usage ? String(num(d, 'points')) : '–'),
      h('td.ds-verify', !d.verified_at ? 'never' : d.verify_bad_points ? h('span.error', `${d.verify_bad_points} bad point(s), ${ago(d.verified_at)}`)
        : `ok, ${ago(d.verified_at)}`),
      h('td', h('button.action', { dataset: { action: 'verify' }, onclick: () => dsAction(app, d, 'verify', reload) }, 'Verify'),
        h('button.action', { dataset: { action: 'gc' }, onclick: () => dsAction(app, d, 'gc', reload) }, 'Collect garbage'))))))));
}

function renderPoints(app, box, view, reload) {
  clear(box);
  const all = view.items || [];
  if (view.error) return box.append(h('p.error', view.error));
  if (!all.length) return box.append(h('p.muted', 'No recovery point of a VM you may see.'));
  const pages = Math.ceil(all.length / PAGE);
  view.page = Math.min(view.page, pages - 1);
  const rows = all.slice(view.page * PAGE, (view.page + 1) * PAGE);
  box.append(h('div.tablewrap', h('table.points',
    h('thead', h('tr', ['VM', 'Taken', 'Datastore', 'Kind', 'Consistency', 'Size', 'Read / written', ''].map(t => h('th', t)))),
    h('tbody', rows.map(p => h('tr.point-row', { dataset: { vm: p.vm_name, point: p.point_id, datastore: p.datastore } },
      h('td', p.vm_name), h('td', pointTime(p.point_id)), h('td', p.datastore), h('td', kind(p)), h('td', p.consistency),
      h('td', bytes(p.size_bytes)), h('td.muted', `${bytes(p.bytes_read)} / ${bytes(p.bytes_written)}`),
      h('td', mayRestore(app) ? h('button.action', { dataset: { action: 'restore' }, onclick: () => restoreAs(app, p, reload) }, 'Restore as…') : null,
        app.features['operate-vm'] ? filesButton(p, view.filesBox) : null)))))),
  h('div.pager#points-pager',
    h('button.secondary#points-newer', { disabled: view.page === 0, onclick: () => { view.page--; renderPoints(app, box, view, reload); } }, 'Newer'),
    h('span.page-label', `${view.page * PAGE + 1}–${view.page * PAGE + rows.length} of ${all.length}`),
    h('button.secondary#points-older', { disabled: view.page >= pages - 1, onclick: () => { view.page++; renderPoints(app, box, view, reload); } }, 'Older')));
}

// The Backups view, in place of the hosts and VMs; it reads its lists when
// shown and when asked (Reload, or after an action).
export function backupsView(app) {
  const dsBox = h('div.datastores-box'), ptBox = h('div.points-box');
  const view = { items: null, error: null, page: 0, filesBox: h('div.files-box#files-box') };
  async function reload() {
    backupsChanged();
    const tasks = [get('/backups').then(r => { Object.assign(view, { items: r.items, error: null }); },
      e => { Object.assign(view, { items: null, error: e.message }); })];
    if (app.features.datastores)
      tasks.push(get('/datastores').then(r => renderDatastores(app, dsBox, r.items, reload), e => { clear(dsBox).append(h('p.error', e.message)); }));
    await Promise.all(tasks);
    renderPoints(app, ptBox, view, reload);
  }
  reload();
  return h('section.backups-view#backups-view',
    h('div.section-head', h('h2.section-title', 'Backups'), h('button.secondary#backups-reload', { onclick: reload }, 'Reload')),
    app.features.datastores ? [h('h3', 'Datastores'), dsBox] : null,
    h('h3', 'Recovery points'), ptBox, view.filesBox);
}
