// Performance charts (uPlot) for a VM or a host, shown only when the server
// has monitoring (/api/v1/metrics/{vm|host}/{id}); anything unexpected
// hides the chart.
import { h, clear } from './dom.js';
import { get } from './api.js';

let uPlotP = null;
function loadUPlot() {
  if (!uPlotP) {
    document.head.append(h('link', { rel: 'stylesheet', href: '/vendor/uplot/uPlot.min.css' }));
    uPlotP = import('/vendor/uplot/uPlot.esm.js').then(m => m.default);
  }
  return uPlotP;
}

const WANTED = [
  { key: 'cpu', label: 'CPU %', stroke: '#2f6fb3' },
  { key: 'memory_pct', label: 'Memory %', stroke: '#3a9a5b' },
];

// Accepts {series:[{metric, points:[{t (ms), avg, max}…]}]} (what armadad
// sends), also [[t, v]…] points or {items:[{at, cpu, memory_pct…}]} rows;
// returns uPlot data or null.
function toData(body) {
  const rows = body?.items || body?.samples || body?.points;
  if (Array.isArray(rows) && rows.length) {
    const t = rows.map(r => {
      const v = r.at ?? r.time ?? r.ts ?? r.t;
      return typeof v === 'number' ? (v > 1e11 ? v / 1000 : v) : Date.parse(v) / 1000;
    });
    const cols = WANTED.filter(w => rows.some(r => typeof r[w.key] === 'number'));
    if (!cols.length) return null;
    return { cols, data: [t, ...cols.map(c => rows.map(r => r[c.key] ?? null))] };
  }
  const series = body?.series;
  if (Array.isArray(series) && series.length) {
    const secs = v => (typeof v === 'number' ? (v > 1e11 ? v / 1000 : v) : Date.parse(v) / 1000);
    const pts = s => (s.points || s.data || []).map(p => (Array.isArray(p) ? [secs(p[0]), p[1]] : [secs(p.t ?? p.at), p.avg ?? p.value ?? p.v]));
    const cols = [], maps = [];
    const times = new Set();
    for (const w of WANTED) {
      const s = series.find(x => (x.metric || x.name) === w.key);
      const p = s ? pts(s) : [];
      if (!p.length) continue;
      cols.push(w);
      maps.push(new Map(p));
      p.forEach(([t]) => times.add(t));
    }
    if (!cols.length) return null;
    const t = [...times].sort((a, b) => a - b);
    return { cols, data: [t, ...maps.map(m => t.map(x => m.get(x) ?? null))] };
  }
  return null;
}

// Draws (or redraws) the chart of one VM or host into container; keeps the
// old drawing until the new data is in, hides the container when there is
// nothing to draw.
export async function renderChart(container, kind, id, available) {
  if (!available) { container.hidden = true; return; }
  let body;
  try {
    body = await get(`/metrics/${kind}/${id}?last=3600`);
  } catch (e) {
    container.hidden = true;
    return;
  }
  const d = toData(body);
  if (!d || d.data[0].filter(t => t).length < 2) { container.hidden = true; return; }
  const uPlot = await loadUPlot().catch(() => null);
  if (!uPlot) return;
  clear(container);
  container.hidden = false;
  container.append(h('h4', 'Performance (last hour)'));
  const w = Math.max(220, (container.clientWidth || 276) - 16);
  new uPlot({
    width: w, height: 160,
    series: [{}, ...d.cols.map(c => ({ label: c.label, stroke: c.stroke, width: 1.5 }))],
    axes: [{}, { size: 40 }],
    scales: { y: { range: [0, 100] } },
  }, d.data, container);
}
