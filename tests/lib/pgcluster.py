"""A throwaway PostgreSQL cluster for the tests (issue 14).

    with PgCluster() as pg:
        pg.createdb("armada_x")
        url = pg.url("armada_x")      # what armadad --db takes

initdb into a temporary directory, listening only on a Unix socket in that
directory (listen_addresses=''), trust authentication for the role
"armada", no locale (byte order, as SQLite compares text). When the tests
run as root, the server runs as the unprivileged user 'nobody' (initdb
refuses root); the directory is removed at stop(), also after a failure.
The machine's own cluster is never used or started.
"""
import glob
import os
import shutil
import subprocess
import tempfile
import uuid

ROLE = "armada"


def bindir():
    """Where initdb and pg_ctl live, or None when PostgreSQL is not installed."""
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
                    reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    pg_config = shutil.which("pg_config")
    if pg_config:
        d = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
        if os.access(os.path.join(d, "initdb"), os.X_OK):
            return d
    return None


def available():
    """Why a cluster cannot be made (a sentence), or None when it can."""
    if not bindir():
        return "PostgreSQL is not installed (Debian package postgresql-15)"
    if os.geteuid() == 0 and not shutil.which("runuser"):
        return "the tests run as root and runuser (util-linux) is missing to start PostgreSQL unprivileged"
    return None


class PgCluster:
    def __init__(self, max_connections=400):
        self.max_connections = max_connections
        self.dir = None
        self.bin = bindir()
        self.started = False
        self.owned = False      # made by start(): stop() removes it

    # -- life --
    def _as_server(self, argv):
        if os.geteuid() == 0:
            return ["runuser", "-u", "nobody", "--"] + argv
        return argv

    def start(self):
        why = available()
        if why:
            raise RuntimeError(why)
        self.dir = tempfile.mkdtemp(prefix="armada-pg-")
        self.owned = True
        try:
            if os.geteuid() == 0:
                shutil.chown(self.dir, "nobody")
            data = os.path.join(self.dir, "data")
            subprocess.run(self._as_server([os.path.join(self.bin, "initdb"), "-D", data, "--no-locale", "-E", "UTF8",
                                            "-A", "trust", "-U", ROLE]),
                           check=True, capture_output=True, cwd=self.dir)
            # Durability is not what the tests measure: fsync off keeps a
            # 2-core machine shared by many runs responsive.
            opts = (f"-c listen_addresses='' -k {self.dir} -c max_connections={self.max_connections}"
                    " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB")
            subprocess.run(self._as_server([os.path.join(self.bin, "pg_ctl"), "-D", data, "-o", opts,
                                            "-l", os.path.join(self.dir, "server.log"), "-w", "-t", "60", "start"]),
                           check=True, capture_output=True, cwd=self.dir)
            self.started = True
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        if self.dir is None or not self.owned:
            return
        try:
            if self.started:
                subprocess.run(self._as_server([os.path.join(self.bin, "pg_ctl"), "-D", os.path.join(self.dir, "data"),
                                                "-m", "immediate", "-w", "stop"]),
                               capture_output=True, cwd="/")
        finally:
            self.started = self.owned = False
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    # -- databases --
    @property
    def conninfo(self):
        """libpq keywords for the server (no database): ARMADA_TEST_PG_URL."""
        return f"host={self.dir} user={ROLE}"

    def url(self, dbname):
        """What armadad --db takes for dbname on this cluster."""
        return f"postgresql:{self.conninfo} dbname={dbname}"

    def psql(self, sql, dbname="postgres"):
        r = subprocess.run([os.path.join(self.bin, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-U", ROLE,
                            "-d", dbname, "-At", "-c", sql], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return r.stdout

    def createdb(self, name=None):
        name = name or "armada_" + uuid.uuid4().hex[:12]
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def dropdb(self, name):
        # WITH (FORCE) waits 5 s for the sessions it terminates to end; on a
        # machine running many tests at once (tests/run-all --jobs) a
        # backend of a daemon that just stopped may take longer to go.
        import time
        deadline = time.monotonic() + 60
        while True:
            try:
                self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except RuntimeError as e:
                if "is being accessed by other users" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


# -- one cluster per process, for the harness (ARMADA_TEST_STORE=postgresql) --
_shared = None


def from_env():
    """The cluster named by ARMADA_TEST_PG_URL ("host=DIR user=armada",
    set by tests/run-all), or one brought up for this process and stopped
    at its exit."""
    global _shared
    if _shared is not None:
        return _shared
    conninfo = os.environ.get("ARMADA_TEST_PG_URL")
    if conninfo:
        conninfo = conninfo[len("postgresql:"):] if conninfo.startswith("postgresql:") else conninfo
        words = dict(w.split("=", 1) for w in conninfo.split() if "=" in w)
        c = PgCluster()
        c.dir = words["host"]
        _shared = c
        return c
    import atexit
    c = PgCluster().start()
    atexit.register(c.stop)
    os.environ["ARMADA_TEST_PG_URL"] = c.conninfo
    _shared = c
    return c
