// The consolidation assessment in the console (issue 12), calling the
// existing API only: the Assessment view (#/assessment, administrators:
// feature "p2v") shows the report's leaderboard (GET /assessments/report:
// low, steady servers first) and the servers without samples yet, each
// with "Convert": a small form (SSH user@address, the host key's
// fingerprint, disks) that starts POST /p2v; the jobs pane follows the job.
// The server checks everything again (and probes the server at once: its
// answer is shown as is).
import { h, clear } from './dom.js';
import { get, post } from './api.js';

function convertForm(app, name, box) {
  const ssh = h('input.p2v-ssh', { placeholder: 'root@address (default: the node_exporter host)', size: 32, 'aria-label': 'SSH user@address' });
  const fp = h('input.p2v-fp', { placeholder: 'SHA256:… (unless armadad has --p2v-known-hosts)', size: 52, 'aria-label': 'Host key fingerprint' });
  const disks = h('input.p2v-disks', { placeholder: '/dev/sda /dev/sdb (default: every disk)', size: 32, 'aria-label': 'Disks' });
  const msg = h('p.p2v-msg', { role: 'status' });
  const go = h('button.primary.p2v-go', {
    onclick: async () => {
      const body = { server: name };
      if (ssh.value.trim()) body.ssh = ssh.value.trim();
      if (fp.value.trim()) body.host_key_fingerprint = fp.value.trim();
      const d = disks.value.trim().split(/\s+/).filter(Boolean);
      if (d.length) body.disks = d;
      go.disabled = true;
      try {
        const r = await post('/p2v', body);
        app.watchJob?.(r.job);
        msg.className = 'p2v-msg';
        msg.textContent = `Converting '${name}' into VM '${r.vm.name}': job ${r.job.id} started.`;
        app.toast?.(msg.textContent);
      } catch (e) {
        msg.className = 'p2v-msg error';
        msg.textContent = e.message;
      } finally {
        go.disabled = false;
      }
    },
  }, 'Convert');
  clear(box).append(h('div.p2v-form', { dataset: { server: name } },
    h('h3', `Convert '${name}' into a VM`),
    h('label', 'SSH ', ssh), ' ', h('label', 'Host key ', fp), ' ', h('label', 'Disks ', disks), ' ', go,
    h('button.secondary.p2v-cancel', { onclick: () => clear(box) }, 'Cancel'), msg));
}

const pct = s => (s && s.p95 !== undefined && s.p95 !== null ? `${Math.round(s.p95)}%` : '–');

export function assessView(app) {
  const table = h('tbody'), formBox = h('div.p2v-box#p2v-box'), note = h('p.muted');
  const convert = name => h('button.secondary.p2v-convert', { dataset: { server: name }, onclick: () => convertForm(app, name, formBox) },
    'Convert');
  async function reload() {
    let r;
    try {
      r = await get('/assessments/report');
    } catch (e) {
      clear(table).append(h('tr', h('td.error', { colSpan: 6 }, e.message)));
      return;
    }
    const rows = r.leaderboard.map(c => h('tr.assess-row', { dataset: { name: c.name } },
      h('td', String(c.rank)), h('td', c.name), h('td', String(c.cpus || '–')), h('td', pct(c.cpu_pct)),
      h('td', c.spiky ? 'spiky' : 'steady'), h('td', app.features.p2v ? convert(c.name) : null)));
    for (const name of r.no_data || [])
      rows.push(h('tr.assess-row.no-data', { dataset: { name } }, h('td', '–'), h('td', name), h('td', '–'), h('td', '–'),
        h('td.muted', 'no samples yet'), h('td', app.features.p2v ? convert(name) : null)));
    clear(table).append(...(rows.length ? rows : [h('tr', h('td.muted', { colSpan: 6 }, 'No server is being assessed (armada assess add).'))]));
    note.textContent = `Plan: ${r.plan.hosts_needed} host(s) for the ranked servers.`;
  }
  reload();
  return h('section.assess-view#assess-view',
    h('div.section-head', h('h2.section-title', 'Consolidation assessment'), h('button.secondary#assess-reload', { onclick: reload }, 'Reload')),
    note,
    h('div.tablewrap', h('table.assess', h('thead', h('tr', ['Rank', 'Server', 'CPUs', 'CPU p95', 'Load', ''].map(t => h('th', t)))), table)),
    formBox);
}
