"""Two (or more) armadads on one store, for the tests of active/standby
managers (issue 14): a shared store (a SQLite file in a temporary directory,
or — ARMADA_TEST_STORE=postgresql — a database of a throwaway PostgreSQL
cluster, tests/lib/pgcluster.py), armadads started on it with --db, and
what the tests ask of them."""
import os
import shutil
import signal
import tempfile
import time

from armada_harness import Armadad, wait_until


class SharedStore:
    """The store the managers share; cleanup() removes it even after a
    failure."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="armada-managers-")
        self.pg = None
        self.pg_server = None
        if os.environ.get("ARMADA_TEST_STORE") == "postgresql":
            name = f"armada_managers_{os.getpid()}_{int(time.monotonic() * 1000) % 1000000}"
            base = os.environ.get("ARMADA_TEST_PG_URL")
            if base:
                # A running server (libpq keywords, "host=/tmp/pg user=armada"):
                # a database of our own on it, dropped at cleanup.
                self.pg_server = base[len("postgresql:"):] if base.startswith("postgresql:") else base
                self._pg_admin(f"CREATE DATABASE {name}")
                self.pg_name = name
                self.db = f"postgresql:{self.pg_server} dbname={name}"
            else:
                from pgcluster import PgCluster  # pgcore's throwaway cluster
                self.pg = PgCluster()
                self.pg.__enter__()
                self.pg.createdb(name)
                self.db = self.pg.url(name)
        else:
            self.db = os.path.join(self.tmp, "shared.db")

    def _pg_admin(self, sql, timeout=60):
        """Runs sql on the server's maintenance database. DROP DATABASE ...
        WITH (FORCE) waits only 5 s for the sessions it terminated to end: a
        killed armadad's backend still finishing a statement on a loaded
        machine outlasts that, so the statement is retried until timeout."""
        import subprocess
        kw = dict(kv.split("=", 1) for kv in self.pg_server.split())
        env = dict(os.environ, PGHOST=kw.get("host", ""), PGUSER=kw.get("user", ""), PGPORT=kw.get("port", "5432"))
        deadline = time.monotonic() + timeout
        while True:
            r = subprocess.run(["psql", "-X", "-q", "-d", "postgres", "-c", sql], env=env, timeout=60,
                               capture_output=True, text=True)
            if r.returncode == 0:
                return
            if "is being accessed by other users" not in r.stderr or time.monotonic() > deadline:
                raise AssertionError(f"psql -c {sql!r} failed: {r.stderr.strip()}")
            time.sleep(0.5)

    @property
    def is_pg(self):
        return self.pg is not None or self.pg_server is not None

    def cleanup(self):
        try:
            if self.pg:
                self.pg.__exit__(None, None, None)
            if self.pg_server:
                # FORCE waits 5 s for the sessions it ends; on a loaded
                # machine (tests side by side: tests/run-all --jobs) a
                # stopped manager's backend may take longer to go.
                import subprocess
                deadline = time.monotonic() + 60
                while True:
                    try:
                        self._pg_admin(f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")
                        break
                    except subprocess.CalledProcessError as e:
                        if b"being accessed by other users" not in (e.stderr or b"") or time.monotonic() > deadline:
                            raise
                        time.sleep(0.5)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def manager_daemon(store, args=()):
    """An armadad on the shared store (not started). The harness's own
    database choice is overridden by --db."""
    return Armadad(list(args) + ["--db", store.db])


def status(d, token):
    st, body = d.request("GET", "/api/v1/managers", token=token)
    assert st == 200, (st, body)
    return body


def this_manager(d, token):
    (me,) = [m for m in status(d, token)["managers"] if m["this"]]
    return me


def is_active(d, token):
    try:
        return this_manager(d, token)["active"]
    except OSError:
        return False


def wait_active(d, token, timeout, t0=None):
    """Waits until d holds the lease; returns the seconds since t0."""
    t0 = t0 if t0 is not None else time.monotonic()
    wait_until(lambda: is_active(d, token), timeout, interval=0.05, what=f"armadad on port {d.port} to become active")
    return time.monotonic() - t0


def lease_taken_s(d, token, t_wall):
    """Seconds from t_wall (time.time()) to when the lease d's status shows
    was taken (its since_at, written by the manager that took it, on this
    machine's clock): the takeover as the managers did it, not as late as
    a test polling a loaded machine saw it."""
    import datetime
    since = status(d, token)["lease"]["since_at"]
    t = datetime.datetime.strptime(since, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()
    return t - t_wall


def kill9(d):
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()


def freeze_past_lease(a, b, token, store, bound_s):
    """SIGSTOPs the active a until b has taken over; the seconds that took.
    On SQLite a process frozen inside a write transaction keeps the file's
    write lock, and no other manager can write (take the lease) until it
    thaws — nor can the frozen one act, so fencing holds, but the takeover
    waits (docs/architecture.md). Such a freeze is thawed for a moment and
    tried again, at most three times."""
    for attempt in range(3):
        a.proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            return wait_active(b, token, bound_s, t0)
        except AssertionError:
            if store.is_pg or attempt == 2:
                raise
            a.proc.send_signal(signal.SIGCONT)
            time.sleep(0.05)
    raise AssertionError("unreachable")
