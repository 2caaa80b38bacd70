// The console's live connection: one EventSource on armadad's event stream
// (GET /api/v1/events/stream; the session cookie authenticates it, being a
// GET it needs no CSRF token). Messages are `event` (an Event) and `job` (a
// Job as GET /jobs/{id} returns it), each with an increasing id.
//
// When the stream fails or is refused (an error before it opened, the 429 of
// --max-streams, a lost connection, armadad restarting) the caller polls as
// before, and the stream is tried again with a growing delay (2 s, 4 s, …,
// at most 60 s), resuming after the last id it had (?since=), so nothing
// that happened in between is lost: armadad replays it.
//
//   const live = openLive({ onMessage(type, data), onState(state, stale) });
//   live.state        'connecting' | 'live' | 'polling'
//   live.close()
//
// onState(state, stale) is called on each change; stale is true when the
// stream opened again after a gap it cannot replay (no message had come, so
// there is no id to resume after): the caller re-reads everything once. The
// first opening is not stale: the caller read everything as it started.

const RETRY_MIN_MS = 2000;
const RETRY_MAX_MS = 60000;

export function openLive({ onMessage, onState }) {
  let es = null;
  let lastId = null;
  let retryMs = RETRY_MIN_MS;
  let retryTimer = null;
  let closed = false;
  let opens = 0;
  const live = { state: 'connecting', close };

  function setState(s, stale = false) {
    if (live.state === s) return;
    live.state = s;
    onState?.(s, stale);
  }

  function connect() {
    retryTimer = null;
    if (closed) return;
    const url = '/api/v1/events/stream' + (lastId !== null ? `?since=${encodeURIComponent(lastId)}` : '');
    const src = es = new EventSource(url, { withCredentials: true });
    src.onopen = () => {
      if (src !== es) return;
      retryMs = RETRY_MIN_MS;
      opens++;
      setState('live', opens > 1 && lastId === null);
    };
    const handle = type => ev => {
      if (src !== es) return;
      if (ev.lastEventId) lastId = ev.lastEventId;
      let data = null;
      try { data = JSON.parse(ev.data); } catch (e) { return; }
      onMessage?.(type, data);
    };
    src.addEventListener('event', handle('event'));
    src.addEventListener('job', handle('job'));
    // Any error: this connection is done (the browser's own retry would
    // hammer a refused stream every 2 s); poll, and try again later.
    src.onerror = () => {
      if (src !== es) return;
      src.close();
      es = null;
      setState('polling');
      if (!closed) {
        retryTimer = setTimeout(connect, retryMs);
        retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
      }
    };
  }

  function close() {
    closed = true;
    clearTimeout(retryTimer);
    if (es) { es.close(); es = null; }
  }

  connect();
  return live;
}
