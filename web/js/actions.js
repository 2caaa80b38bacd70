// What can be done to a VM or a host, and the right-click menu that offers it.
import { h, clear } from './dom.js';
import { post, del } from './api.js';

// Which actions fit which state, and the session feature each needs (what
// the server says this user may do); the server decides in the end.
export const VM_ACTIONS = [
  { id: 'start', label: 'Start', when: s => ['stopped', 'crashed', 'missing'].includes(s), feature: 'operate-vm' },
  { id: 'stop', label: 'Shut down', when: s => s === 'running', feature: 'operate-vm' },
  { id: 'kill', label: 'Power off', when: s => ['running', 'paused', 'shutting-down'].includes(s), feature: 'operate-vm' },
  { id: 'pause', label: 'Pause', when: s => s === 'running', feature: 'operate-vm' },
  { id: 'resume', label: 'Resume', when: s => s === 'paused', feature: 'operate-vm' },
  { id: 'migrate', label: 'Migrate…', when: s => s === 'running', feature: 'migrate' },
  { id: 'console', label: 'Console', when: s => s === 'running', feature: 'console' },
  { id: 'delete', label: 'Delete', when: s => !['creating', 'deleting'].includes(s), danger: true, feature: 'operate-vm' },
];

// Runs an action; returns the job (or null). Throws ApiError.
export async function runVmAction(app, vm, id) {
  if (id === 'console') { location.hash = `#/console/${vm.id}`; return null; }
  if (id === 'delete') {
    if (!confirm(`Delete VM '${vm.name}' and its disks?`)) return null;
    return (await del(`/vms/${vm.id}`))?.job;
  }
  if (id === 'migrate') {
    const target = await app.pickHost(`Migrate '${vm.name}' to`, vm);
    if (target === undefined) return null;
    const body = target ? { to: target.name } : {};
    return (await post(`/vms/${vm.id}/migrate`, body))?.job;
  }
  return (await post(`/vms/${vm.id}/actions/${id}`))?.job;
}

export async function runHostAction(app, host, id) {
  if (id === 'maintenance') return (await post(`/hosts/${host.id}/maintenance`, { on: host.state !== 'maintenance' }))?.job;
  if (id === 'refresh') return (await post(`/hosts/${host.id}/actions/refresh`))?.job;
  return null;
}

let menuEl = null;
export function closeMenu() {
  if (menuEl) { menuEl.remove(); menuEl = null; }
}
document.addEventListener('click', closeMenu);
document.addEventListener('keydown', e => { if (e.key === 'Escape') closeMenu(); });
window.addEventListener('blur', closeMenu);

// items: [{label, onclick, disabled, danger}]
export function showMenu(x, y, title, items) {
  closeMenu();
  menuEl = h('div.menu', { role: 'menu' },
    h('div.menu-title', title),
    items.map(it => h('button.menu-item', {
      role: 'menuitem', disabled: !!it.disabled, class: 'menu-item' + (it.danger ? ' danger' : ''),
      dataset: { action: it.id || '' },
      onclick: e => { e.stopPropagation(); closeMenu(); it.onclick(); },
    }, it.label)));
  document.body.append(menuEl);
  const r = menuEl.getBoundingClientRect();
  menuEl.style.left = Math.max(4, Math.min(x, innerWidth - r.width - 4)) + 'px';
  menuEl.style.top = Math.max(4, Math.min(y, innerHeight - r.height - 4)) + 'px';
  menuEl.querySelector('button:not([disabled])')?.focus();
}

export { clear };
