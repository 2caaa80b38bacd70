// A VM's screen in the browser: noVNC over the WebSocket armadad bridges to
// the VM's VNC server (/api/v1/vms/{id}/console; the session cookie
// authenticates it).
import { h, clear } from './dom.js';
import { apiFetch } from './api.js';

export async function openConsole(app, root, vm) {
  const status = h('span.console-status', 'Connecting…');
  const screen = h('div.console-screen');
  const bar = h('div.console-bar',
    h('button.secondary', { onclick: () => { location.hash = '#/'; } }, '← Back'),
    h('strong', vm ? vm.name : 'VM'), status,
    h('button.secondary', { onclick: () => rfb?.sendCtrlAltDel() }, 'Ctrl+Alt+Del'));
  clear(root).append(h('div.console', bar, screen));
  let rfb = null;
  // A plain GET with check=true first: 200 means "open the WebSocket";
  // anything else says, in a sentence, why the console cannot open (VM
  // stopped, VNC out of reach).
  try {
    const pre = await apiFetch(`/vms/${vm.id}/console?check=true`);
    if (pre.status === 401) { app.expired(); return () => {}; }
    if (pre.status !== 200) {
      const b = await pre.json().catch(() => null);
      status.textContent = b?.error?.message || `The console cannot open (${pre.status}).`;
      status.dataset.state = 'error';
      return () => {};
    }
  } catch (e) {
    status.textContent = 'Armada cannot be reached.';
    return () => {};
  }
  let RFB;
  try {
    RFB = (await import('/vendor/novnc/core/rfb.js')).default;
  } catch (e) {
    status.textContent = `The VNC client could not be loaded (is node_modules installed? run scripts/bootstrap): ${e.message}`;
    status.dataset.state = 'error';
    return () => {};
  }
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/v1/vms/${vm.id}/console`;
  rfb = new RFB(screen, url, { wsProtocols: ['binary'] });
  rfb.scaleViewport = true;
  // VMs on remote hosts have a VNC password: ask armadad for it (it checks
  // that this user may operate the VM) when the VNC server wants it.
  rfb.addEventListener('credentialsrequired', async () => {
    try {
      const res = await apiFetch(`/vms/${vm.id}/console-password`);
      const b = await res.json();
      if (!res.ok) throw new Error(b?.error?.message || `status ${res.status}`);
      rfb.sendCredentials({ password: b.password });
    } catch (e) {
      status.textContent = `The console's password could not be fetched: ${e.message}`;
      status.dataset.state = 'error';
    }
  });
  rfb.addEventListener('connect', () => { status.textContent = 'Connected'; status.dataset.state = 'connected'; });
  rfb.addEventListener('disconnect', e => {
    status.textContent = e.detail.clean ? 'Disconnected' : 'The console connection failed or was closed (is the VM running, is its VNC reachable from armadad?).';
    status.dataset.state = 'disconnected';
  });
  return () => { try { rfb.disconnect(); } catch (e) { /* gone */ } };
}
