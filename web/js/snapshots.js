// The snapshots of the selected VM, in its details panel (issue 11): the
// list from GET /vms/{id}/snapshots (read from the host, so fetched only
// when another VM is selected, its snapshot count changes, or after 10 s),
// with buttons to take one and to revert to or delete each. The server
// decides in the end; the buttons follow the session's features.
import { h } from './dom.js';
import { get, post, del } from './api.js';

const TTL_MS = 10000;
const cache = { id: null, count: null, at: 0, list: null, error: null, loading: false };

async function load(vm, rerender) {
  Object.assign(cache, { id: vm.id, count: vm.snapshots ?? 0, at: Date.now(), loading: true });
  try {
    const r = await get(`/vms/${vm.id}/snapshots`);
    if (cache.id === vm.id) Object.assign(cache, { list: r.snapshots, error: null });
  } catch (e) {
    if (cache.id === vm.id) Object.assign(cache, { list: null, error: e.message });
  }
  cache.loading = false;
  rerender();
}

async function act(app, vm, what, name, rerender) {
  try {
    let r;
    if (what === 'create') {
      const n = prompt(`Take a snapshot of '${vm.name}'${vm.state === 'running' ? ' (with its memory)' : ''}.\nName (empty: a dated one):`, '');
      if (n === null) return;
      r = await post(`/vms/${vm.id}/snapshots`, n.trim() ? { name: n.trim() } : {});
    } else if (what === 'revert') {
      if (!confirm(`Revert '${vm.name}' to snapshot '${name}'? What changed since is lost.`)) return;
      r = await post(`/vms/${vm.id}/snapshots/${encodeURIComponent(name)}/revert`);
    } else {
      if (!confirm(`Delete snapshot '${name}' of '${vm.name}'?`)) return;
      r = await del(`/vms/${vm.id}/snapshots/${encodeURIComponent(name)}`);
    }
    if (r?.job) {
      app.watchJob(r.job);
      app.toast(`Snapshot ${what} on '${vm.name}': job ${r.job.id} started.`);
    }
    cache.at = 0;  // read again at the next render
    rerender();
  } catch (e) {
    app.toast(e.message, true);
  }
}

// The panel for vm; rerender() redraws the details once the list came.
export function snapshotsPanel(app, vm, rerender) {
  if (cache.id !== vm.id) Object.assign(cache, { list: null, error: null });
  const stale = cache.id !== vm.id || cache.count !== (vm.snapshots ?? 0) || Date.now() - cache.at > TTL_MS;
  if (stale && !cache.loading) load(vm, rerender);
  const may = app.features['operate-vm'] && vm.origin !== 'foreign' && !['creating', 'deleting'].includes(vm.state);
  const rows = (cache.list || []).map(s => h('li.snapshot', { dataset: { name: s.name } },
    h('span.snap-name', s.name + (s.current ? ' ●' : '')),
    h('span.muted', ` ${s.has_memory ? 'memory + disks' : 'disks'}${s.parent ? ` · after ${s.parent}` : ''}`),
    s.description ? h('div.muted', s.description) : null,
    may ? h('span.snap-actions',
      h('button.action', { dataset: { action: 'revert' }, onclick: () => act(app, vm, 'revert', s.name, rerender) }, 'Revert'),
      h('button.action.danger', { dataset: { action: 'delete' }, onclick: () => act(app, vm, 'delete', s.name, rerender) }, 'Delete')) : null));
  return h('div.snapshots', { dataset: { vmId: vm.id } },
    h('h4', `Snapshots (${cache.list ? cache.list.length : vm.snapshots ?? 0})`,
      may ? h('button.action#snap-create', { dataset: { action: 'snapshot' }, onclick: () => act(app, vm, 'create', null, rerender) }, 'Take snapshot') : null),
    cache.error ? h('p.muted', cache.error) : null,
    cache.list && !cache.list.length ? h('p.muted', 'None.') : null,
    rows.length ? h('ul.snap-list', rows) : null);
}
