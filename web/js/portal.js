// The self-service part of the portal: the templates a user's grants allow,
// the quota used and left, and deploying a VM from a template (the server
// places it inside the grant's host group).
import { h, clear, mib } from './dom.js';
import { get, post } from './api.js';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
// The same for the pattern attribute (compiled with the v flag: '-' escaped).
const NAME_PATTERN = '[A-Za-z0-9][A-Za-z0-9._\\-]{0,62}';

function quotaRow(label, q, fmt = x => String(x)) {
  if (!q) return null;
  const limited = q.limit !== null && q.limit !== undefined;
  const pct = limited && q.limit > 0 ? Math.min(100, Math.round(100 * q.used / q.limit)) : 0;
  return h('div.quota', { dataset: { quota: label } },
    h('span.qlabel', label),
    h('span.meter', h('span.fill', { style: { width: (limited ? pct : 0) + '%' } }),
      h('span.label', limited ? `${fmt(q.used)} of ${fmt(q.limit)} used, ${fmt(q.left)} left` : `${fmt(q.used)} used, no limit`)));
}

function deployDialog(app, tpl) {
  const name = h('input', { name: 'name', required: true, autocomplete: 'off', pattern: NAME_PATTERN });
  const err = h('p.error', { role: 'alert' });
  const btn = h('button.primary', { type: 'submit' }, 'Deploy');
  const form = h('form.wizard', {
    onsubmit: async e => {
      e.preventDefault();
      if (!NAME_RE.test(name.value)) { err.textContent = 'The name must start with a letter or digit and use only letters, digits, ".", "-" and "_".'; return; }
      btn.disabled = true;
      try {
        const r = await post(`/templates/${tpl.id}/deploy`, { name: name.value });
        (r.jobs || []).forEach(j => app.watchJob(j));
        overlay.remove();
        app.toast(`Deploying '${name.value}' from '${tpl.name}'…`);
        app.refresh();
      } catch (ex) {
        err.textContent = ex.message;
        btn.disabled = false;
      }
    },
  },
  h('h2', `New VM from '${tpl.name}'`),
  h('p.muted', `${tpl.cpus} vCPU, ${mib(tpl.memory_mib)}${tpl.points !== undefined ? `, ${tpl.points} point${tpl.points === 1 ? '' : 's'}` : ''}`),
  h('label.field', h('span', 'Name'), name), err,
  h('div.buttons', h('button.secondary', { type: 'button', onclick: () => overlay.remove() }, 'Cancel'), btn));
  const overlay = h('div.overlay', { onclick: e => { if (e.target === overlay) overlay.remove(); } }, form);
  document.body.append(overlay);
  name.focus();
}

// Renders the grants into section (hidden when there are none).
export async function renderPortal(app, section) {
  let ss;
  try {
    ss = await get('/self-service');
  } catch (e) {
    section.hidden = true;
    return;
  }
  const grants = ss.grants || [];
  if (!grants.length) { section.hidden = true; return; }
  clear(section);
  section.hidden = false;
  section.append(h('h2.section-title', 'Templates you may deploy'));
  for (const g of grants) {
    const canDeploy = !g.actions || g.actions.includes('deploy');
    const q = g.quota || {};
    section.append(h('div.grant', { dataset: { grant: g.id } },
      h('div.grant-head', h('strong', g.group_path || 'All Hosts'), h('span.muted', ` · actions: ${(g.actions || []).join(', ') || 'all'}`)),
      h('div.quotas', quotaRow('points', q.points), quotaRow('VMs', q.vms), quotaRow('vCPUs', q.cpus), quotaRow('memory', q.memory_mib, mib)),
      h('div.templates-grid', (g.templates || []).map(t => h('div.tpl-card', { dataset: { template: t.name } },
        h('div.vm-name', t.name),
        h('div.muted', `${t.cpus} vCPU · ${mib(t.memory_mib)}${t.points !== undefined ? ` · ${t.points} point${t.points === 1 ? '' : 's'}` : ''}`),
        canDeploy ? h('button.primary.deploy', { onclick: () => deployDialog(app, t) }, 'Deploy…') : h('span.muted', 'no deploy right'))))));
  }
}
