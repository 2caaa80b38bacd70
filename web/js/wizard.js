// The New VM wizard: name, hardware, then where it runs — every host rated
// with stars and the reason for a zero (placement API), or a plain host list
// when the server has no placement yet; pick one or let Armada choose.
import { h, clear, mib } from './dom.js';
import { get, post, ApiError } from './api.js';

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
// The same for the pattern attribute (compiled with the v flag: '-' escaped).
const NAME_PATTERN = '[A-Za-z0-9][A-Za-z0-9._\\-]{0,62}';

function stars(n) {
  const full = Math.floor(n), half = n - full >= 0.5 ? 1 : 0;
  const el = h('span.stars', { title: `${n} of 5 stars`, 'aria-label': `${n} of 5 stars` });
  for (let i = 0; i < 5; i++) {
    el.append(h('span', { class: i < full ? 'star full' : i === full && half ? 'star half' : 'star' }, '★'));
  }
  return el;
}

export function openWizard(app) {
  const s = { step: 0, name: '', cpus: 1, memory_mib: 512, disk_gib: 8, start: true, host: null, auto: false, ratings: null };
  // Placement rates the hosts of the group selected in the tree (the root
  // when that is "All Hosts"); a delegated administrator, who may not rate
  // the root, gets the plain host list there.
  const g = app.data.groups.find(x => x.id === app.groupId);
  s.group = g && g.id !== 1 ? g.path : null;
  const canRate = app.features.ratings && !!g;
  const body = h('div.wizard-body');
  const err = h('p.error', { role: 'alert' });
  const back = h('button.secondary', { type: 'button', onclick: () => { s.step--; render(); } }, 'Back');
  const next = h('button.primary', { type: 'submit' }, 'Next');
  const steps = ['Name', 'Hardware', 'Placement'];
  const crumbs = h('ol.wizard-steps');
  const form = h('form.wizard', { onsubmit: e => { e.preventDefault(); advance(); } },
    h('h2', 'New virtual machine'), crumbs, body, err,
    h('div.buttons', h('button.secondary', { type: 'button', onclick: () => close() }, 'Cancel'), back, next));
  const overlay = h('div.overlay', { onclick: e => { if (e.target === overlay) close(); } }, form);
  function close() { overlay.remove(); }
  document.body.append(overlay);

  function field(label, input, hint) {
    return h('label.field', h('span', label), input, hint ? h('small', hint) : null);
  }

  async function loadPlacement() {
    const q = `cpus=${s.cpus}&memory_mib=${s.memory_mib}&disk_bytes=${s.disk_gib * 1073741824}` +
      (s.group ? `&group=${encodeURIComponent(s.group)}` : '');
    if (canRate) {
      try {
        const r = await get(`/placement/ratings?${q}`);
        s.ratings = (r.items || r.ratings || []).map(x => ({
          id: x.host_id ?? x.id, name: x.host_name ?? x.host ?? x.name,
          stars: x.stars ?? (x.half_stars !== undefined ? x.half_stars / 2 : null),
          rating: x.rating, reason: x.reason || (Array.isArray(x.reasons) ? x.reasons.join('; ') : ''),
        }));
        return;
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) { err.textContent = e.message; }
      }
    }
    s.ratings = null; // plain host list
  }

  function render() {
    clear(crumbs).append(...steps.map((t, i) => h('li', { class: i === s.step ? 'current' : i < s.step ? 'done' : '' }, t)));
    clear(body);
    err.textContent = '';
    back.hidden = s.step === 0;
    next.textContent = s.step === 2 ? 'Create' : 'Next';
    if (s.step === 0) {
      const name = h('input', { name: 'name', value: s.name, required: true, autocomplete: 'off', pattern: NAME_PATTERN, oninput: e => { s.name = e.target.value; } });
      body.append(field('Name', name, 'Letters, digits, dot, dash and underscore; up to 63 characters.'));
      setTimeout(() => name.focus(), 0);
    } else if (s.step === 1) {
      body.append(
        field('Virtual CPUs', h('input', { name: 'cpus', type: 'number', min: 1, max: 256, value: s.cpus, oninput: e => { s.cpus = +e.target.value; } })),
        field('Memory (MiB)', h('input', { name: 'memory', type: 'number', min: 16, step: 16, value: s.memory_mib, oninput: e => { s.memory_mib = +e.target.value; } })),
        field('Disk (GiB, 0 for none)', h('input', { name: 'disk', type: 'number', min: 0, max: 65536, value: s.disk_gib, oninput: e => { s.disk_gib = +e.target.value; } })),
        h('label.check', h('input', { type: 'checkbox', name: 'start', checked: s.start, onchange: e => { s.start = e.target.checked; } }), ' Start it when it is created'));
    } else {
      const list = h('div.hostpick', { role: 'radiogroup' });
      body.append(h('p.muted', `${s.name}: ${s.cpus} vCPU, ${mib(s.memory_mib)} memory${s.disk_gib ? `, ${s.disk_gib} GiB disk` : ''}`), list);
      const choose = (host, auto) => { s.host = host; s.auto = auto; };
      if (s.ratings) {
        list.append(h('label.hostopt.auto', h('input', { type: 'radio', name: 'host', value: '', checked: s.auto || !s.host, onchange: () => choose(null, true) }),
          h('span.hname', 'Let Armada choose'), h('span.muted', 'the best-rated host when the VM is created')));
        if (!s.host) s.auto = true;
        for (const r of s.ratings) {
          const zero = !r.rating && !r.stars;
          list.append(h('label.hostopt', { class: 'hostopt' + (zero ? ' zero' : '') },
            h('input', { type: 'radio', name: 'host', value: r.name, disabled: zero, checked: s.host?.name === r.name, onchange: () => choose(r, false) }),
            h('span.hname', r.name), r.stars !== null ? stars(r.stars) : null,
            zero ? h('span.reason', r.reason || 'This host cannot take the VM.') : null));
        }
      } else {
        const hosts = app.data.hosts.filter(x => x.state === 'ok');
        if (!hosts.length) list.append(h('p.muted', 'No host is available.'));
        hosts.forEach((x, i) => {
          if (!s.host && i === 0) s.host = x;
          list.append(h('label.hostopt', h('input', { type: 'radio', name: 'host', value: x.name, checked: s.host?.name === x.name, onchange: () => choose(x, false) }),
            h('span.hname', x.name), h('span.muted', `${x.cpus ?? '?'} CPUs, ${mib(x.free_memory_mib ?? x.memory_mib)} free, ${x.group_path || ''}`)));
        });
      }
    }
  }

  async function advance() {
    err.textContent = '';
    if (s.step === 0) {
      if (!NAME_RE.test(s.name)) { err.textContent = 'The name must start with a letter or digit and use only letters, digits, ".", "-" and "_".'; return; }
    } else if (s.step === 1) {
      if (!(s.cpus >= 1 && s.memory_mib >= 16 && s.disk_gib >= 0)) { err.textContent = 'Give at least 1 CPU and 16 MiB of memory.'; return; }
      next.disabled = true;
      await loadPlacement();
      next.disabled = false;
    } else {
      const req = { name: s.name, cpus: s.cpus, memory_mib: s.memory_mib, start: s.start };
      if (s.disk_gib > 0) req.disk_size = `${s.disk_gib}G`;
      if (!s.auto && s.host) req.host = s.host.name;
      if (s.auto && s.group) req.group = s.group;
      next.disabled = true;
      try {
        const r = await post('/vms', req);
        close();
        app.toast(`Creating VM '${s.name}'…`);
        app.watchJob(r.job);
        app.refresh();
      } catch (e) {
        err.textContent = e.message;
        next.disabled = false;
      }
      return;
    }
    s.step++;
    render();
  }
  render();
}
