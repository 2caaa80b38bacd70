"""Direct access to an armadad's store for the tests that read or write the
database behind the daemon's back (what an older Armada, a crash or a
hand edit would leave), on either engine.

    db = dbdirect.connect(daemon)          # sqlite3-style: ? parameters
    db.execute("UPDATE host SET state = ? WHERE id = ?", ("ok", 3))
    db.commit(); db.close()
    with dbdirect.connect(daemon) as db:   # commits (or rolls back) and closes
        (n,) = db.execute('SELECT count(*) FROM "user"').fetchone()

The daemon's store is PostgreSQL when it was started with `--db
postgresql://…` (the harness does that under ARMADA_TEST_STORE=postgresql;
see store_url()), else the SQLite file var/armada.db of its state
directory. Write SQL both engines accept: quote the table "user", use
`INSERT … ON CONFLICT(…) DO UPDATE` instead of INSERT OR REPLACE and
`RETURNING id` instead of cursor.lastrowid."""
import os

ENGINE_SQLITE = "sqlite"
ENGINE_POSTGRESQL = "postgresql"


def store_url(daemon):
    """The --db value the daemon runs on (a postgresql:// URL, sqlite:PATH or
    a path), or the SQLite file of its state directory. The harness's
    PostgreSQL wrapper (ARMADA_TEST_STORE=postgresql) records the database
    it made as daemon.pg_db (and DIR/pg-database); an explicit --db in
    daemon.args wins; the running process's command line is the last
    resort."""
    for attr in ("db_url", "store_url", "pg_url", "db"):
        url = getattr(daemon, attr, None)
        if isinstance(url, str) and url:
            return url
    for argv in (list(getattr(daemon, "args", []) or []),):
        for i, a in enumerate(argv):
            if a == "--db" and i + 1 < len(argv):
                return argv[i + 1]
    # The harness's PostgreSQL run: the database it made for the daemon's
    # state directory (daemon.pg_db, also written to DIR/pg-database).
    name = getattr(daemon, "pg_db", None)
    marker = os.path.join(getattr(daemon, "dir", "") or "", "pg-database")
    if not name and os.path.exists(marker):
        with open(marker) as f:
            name = f.read().strip()
    if name:
        import pgcluster
        return pgcluster.from_env().url(name)
    for argv in (list(getattr(daemon, "args", []) or []), _cmdline(daemon)):
        for i, a in enumerate(argv):
            if a == "--db" and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith("--db="):
                return a[len("--db="):]
    if os.environ.get("ARMADA_TEST_STORE") == "postgresql":
        raise RuntimeError("dbdirect: ARMADA_TEST_STORE=postgresql but the daemon records no --db URL")
    return os.path.join(daemon.dir, "var", "armada.db")


def _cmdline(daemon):
    proc = getattr(daemon, "proc", None)
    if proc is None or proc.poll() is not None:
        return []
    try:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def engine_of(url):
    return ENGINE_POSTGRESQL if url.startswith(("postgresql:", "postgres:")) else ENGINE_SQLITE


def engine(daemon):
    """ENGINE_SQLITE or ENGINE_POSTGRESQL: the daemon's store, also before
    its first start (the harness makes its PostgreSQL database at start())."""
    try:
        return engine_of(store_url(daemon))
    except RuntimeError:
        if os.environ.get("ARMADA_TEST_STORE") == "postgresql":
            return ENGINE_POSTGRESQL
        raise


def translate(sql):
    """sqlite3's ? placeholders to psycopg2's %s, outside quotes; a literal %
    doubled (psycopg2 formats the text)."""
    out, quote = [], None
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def pg_dsn(url):
    """A libpq connection string for psycopg2 from a --db value: a URI is
    one already; `postgresql:host=/tmp/x dbname=armada` is the keyword
    form behind the scheme."""
    if url.startswith(("postgresql://", "postgres://")):
        return url
    return url.split(":", 1)[1]


class Connection:
    """A DB-API connection with sqlite3's conveniences on both engines:
    execute() on the connection returns the cursor, ? parameters."""

    def __init__(self, raw, engine_name, readonly=False):
        self.raw = raw
        self.engine = engine_name
        self.readonly = readonly

    def execute(self, sql, params=()):
        if self.engine == ENGINE_SQLITE:
            return self.raw.execute(sql, tuple(params))
        cur = self.raw.cursor()
        if params:
            cur.execute(translate(sql), tuple(params))
        else:   # without parameters psycopg2 formats nothing: the text as is
            cur.execute(sql)
        return cur

    def executemany(self, sql, seq):
        if self.engine == ENGINE_SQLITE:
            return self.raw.executemany(sql, seq)
        cur = self.raw.cursor()
        cur.executemany(translate(sql), [tuple(p) for p in seq])
        return cur

    def commit(self):
        self.raw.commit()

    def rollback(self):
        self.raw.rollback()

    def close(self):
        if self.raw is not None:
            self.raw.close()
            self.raw = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None and not self.readonly:
                self.commit()
            else:
                self.rollback()
        finally:
            self.close()
        return False


def import_psycopg2():
    """psycopg2, also when the tests run under another Python 3.11 than
    Debian's (pyenv), whose python3-psycopg2 lives in dist-packages."""
    try:
        import psycopg2
    except ImportError:
        import sys
        dist = "/usr/lib/python3/dist-packages"
        if sys.version_info[:2] != (3, 11) or not os.path.isdir(os.path.join(dist, "psycopg2")):
            raise
        sys.path.append(dist)
        import psycopg2
    return psycopg2


def connect_url(url, readonly=False, timeout=10):
    """A Connection to the store at url (see store_url())."""
    if engine_of(url) == ENGINE_POSTGRESQL:
        psycopg2 = import_psycopg2()
        raw = psycopg2.connect(pg_dsn(url), connect_timeout=timeout)
        if readonly:
            raw.set_session(readonly=True)
        return Connection(raw, ENGINE_POSTGRESQL, readonly)
    import sqlite3
    path = url[len("sqlite:"):] if url.startswith("sqlite:") else url
    if readonly:
        raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    else:
        raw = sqlite3.connect(path, timeout=timeout)
    return Connection(raw, ENGINE_SQLITE, readonly)


def connect(daemon, readonly=False, timeout=10):
    """A Connection to the store of daemon (an armada_harness.Armadad)."""
    return connect_url(store_url(daemon), readonly=readonly, timeout=timeout)


def tables(conn):
    """The names of the store's tables (not SQLite's own), sorted."""
    if conn.engine == ENGINE_SQLITE:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'")
    else:
        rows = conn.execute("SELECT table_name FROM information_schema.tables"
                            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'")
    return sorted(r[0] for r in rows.fetchall())


def columns(conn, table):
    """The column names of table, in their order."""
    if conn.engine == ENGINE_SQLITE:
        return [r[1] for r in conn.execute("SELECT * FROM pragma_table_info(?)", (table,)).fetchall()]
    return [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns"
                                       " WHERE table_schema = current_schema() AND table_name = ?"
                                       " ORDER BY ordinal_position", (table,)).fetchall()]
