"""armada-admin migrate-store: an installation's whole store moved into a
new one (SQLite → PostgreSQL and back; SQLite → SQLite runs everywhere),
verified table by table, and armadad on the copy shows the same inventory.
Bad input: a source in use, a target that exists or holds rows, an
unreachable target."""
import os
import shutil
import subprocess
import tempfile
import unittest
from unittest import mock

import dbdirect
from armada_harness import BUILD, Armadad

ADMIN = os.path.join(BUILD, "src", "admin", "armada-admin")

try:
    import pgcluster   # the PostgreSQL engine's test harness (issue 14)
    PG_MISSING = pgcluster.available()
except ImportError:
    pgcluster, PG_MISSING = None, "tests/lib/pgcluster.py (the PostgreSQL engine's harness) is not on this branch"


def admin(*args, cwd=None):
    p = subprocess.run([ADMIN] + list(args), capture_output=True, text=True, timeout=300, cwd=cwd,
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    return p.returncode, p.stdout, p.stderr


def populate(d):
    """What an installation that ran for a while holds: groups, hosts, VMs
    (one removed: its id must never come back), users, jobs and events."""
    d.ok("POST", "/api/v1/host-groups", {"path": "Site/Rack-1"})
    d.add_host("t1", "test:///default", group="Site/Rack-1")
    d.add_host("t2", d.test_node_uri("t2"))
    d.ok("POST", "/api/v1/users", {"name": "ro", "password": "ro-password", "role": "read-only"})
    d.ok("POST", "/api/v1/users", {"name": "ss", "password": "ss-password", "role": "self-service"})
    vms = [d.create_vm(f"mig{i:02d}", "t1" if i % 2 else "t2", cpus=1, memory_mib=64) for i in range(6)]
    d.wait_job(d.ok("POST", f"/api/v1/vms/{vms[0]['id']}/actions/start")["job"]["id"])
    gone = vms[-1]
    r = d.ok("DELETE", f"/api/v1/vms/{gone['id']}")
    if isinstance(r, dict) and r.get("job"):
        assert d.wait_job(r["job"]["id"])["state"] == "succeeded"
    return max(v["id"] for v in vms)


def inventory(d):
    """The API's view, in the fields a restart of armadad keeps (the test
    driver forgets its domains' states with the process)."""
    def items(path, keys):
        return sorted(tuple(it.get(k) for k in keys) for it in d.ok("GET", path)["items"])
    return {
        "groups": items("/api/v1/host-groups", ("id", "path", "parent_id")),
        "hosts": items("/api/v1/hosts", ("id", "name", "uri", "group_id")),
        "vms": items("/api/v1/vms?limit=1000", ("id", "uuid", "name", "host_id", "cpus", "memory_mib", "owner_id")),
        "users": items("/api/v1/users", ("id", "name", "role")),
        "jobs": items("/api/v1/jobs?limit=1000", ("id", "kind", "target_id", "target_name")),
    }


def events(d):
    return {(e["id"], e["kind"], e["message"]) for e in d.ok("GET", "/api/v1/events?limit=1000")["items"]}


class MigrateCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="armada-migrate-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        # These tests choose each armadad's store themselves (a SQLite source,
        # the copy as --db), also in the suite's PostgreSQL run.
        env = mock.patch.dict(os.environ)
        env.start()
        self.addCleanup(env.stop)
        os.environ.pop("ARMADA_TEST_STORE", None)

    def daemon(self, state, db=None):
        d = Armadad(args=["--db", db] if db else [], state_dir=state)
        self.addCleanup(d.cleanup)
        d.start()
        d.token = d.login()
        return d

    def populated_source(self):
        """A stopped armadad's SQLite store with a history; (state dir,
        store path, inventory, events, highest VM id ever)."""
        state = os.path.join(self.tmp, "a")
        os.makedirs(state)
        d = self.daemon(state)
        last_vm = populate(d)
        inv, ev = inventory(d), events(d)
        self.assertEqual(d.stop(), 0)
        return state, os.path.join(state, "var", "armada.db"), inv, ev, last_vm

    def assert_migrated(self, code, out, err):
        self.assertEqual(code, 0, out + err)
        self.assertIn("every row count and checksum agrees", out)
        for table in ("host", "vm", "user", "job", "event", "host_group"):
            line = [ln for ln in out.splitlines() if ln.split()[:1] == [table]]
            self.assertEqual(len(line), 1, out)
            self.assertTrue(line[0].endswith("ok"), line[0])

    def assert_same_installation(self, state, db, inv, ev, last_vm):
        d = self.daemon(state, db)
        self.assertEqual(inventory(d), inv)
        self.assertLessEqual(ev, events(d))   # the new armadad adds its own
        # Ids of removed rows are never handed out again.
        vm = d.create_vm("after-move", "t2", cpus=1, memory_mib=64)
        self.assertGreater(vm["id"], last_vm)
        self.assertEqual(d.stop(), 0)


class TestMigrateSqlite(MigrateCase):
    """The copier through the same statements on SQLite at both ends."""

    def test_copy_is_verified_and_serves_the_same_inventory(self):
        state, src, inv, ev, last_vm = self.populated_source()
        dst = os.path.join(self.tmp, "copy.db")
        self.assert_migrated(*admin("migrate-store", "--from", "sqlite:" + src, "--to", "sqlite:" + dst))
        self.assert_same_installation(state, dst, inv, ev, last_vm)

    def test_source_in_use_is_refused(self):
        state = os.path.join(self.tmp, "busy")
        os.makedirs(state)
        self.daemon(state)
        dst = os.path.join(self.tmp, "never.db")
        code, out, err = admin("migrate-store", "--from", os.path.join(state, "var", "armada.db"), "--to", dst)
        self.assertEqual(code, 3, out + err)
        self.assertIn("The source store is in use (is armadad running on it?)", err)
        self.assertFalse(os.path.exists(dst))

    def test_existing_target_file_is_refused(self):
        state, src, *_ = self.populated_source()
        dst = os.path.join(self.tmp, "there.db")
        with open(dst, "w") as f:
            f.write("not mine")
        code, out, err = admin("migrate-store", "--from", src, "--to", dst)
        self.assertEqual(code, 3, out + err)
        self.assertIn("exists already", err)
        with open(dst) as f:
            self.assertEqual(f.read(), "not mine")

    def test_a_value_postgresql_would_refuse_is_named_and_nothing_is_left(self):
        state, src, *_ = self.populated_source()
        with dbdirect.connect_url(src) as db:   # what a hand edit could leave in SQLite
            db.execute("UPDATE vm SET cpus = 'two' WHERE name = 'mig01'")
        dst = os.path.join(self.tmp, "half.db")
        code, out, err = admin("migrate-store", "--from", src, "--to", dst)
        self.assertEqual(code, 3, out + err)
        self.assertIn("Cannot copy table 'vm': column 'cpus' holds a value that is not an integer.", err)
        self.assertFalse(os.path.exists(dst))

    def test_missing_source_and_bad_usage(self):
        code, out, err = admin("migrate-store", "--from", os.path.join(self.tmp, "nope.db"), "--to", os.path.join(self.tmp, "x.db"))
        self.assertEqual(code, 3)
        self.assertIn("does not exist", err)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "nope.db")))
        self.assertEqual(admin("migrate-store", "--from", "a.db")[0], 2)
        self.assertEqual(admin("frobnicate")[0], 2)

    def test_unreachable_target_names_no_password(self):
        state, src, *_ = self.populated_source()
        code, out, err = admin("migrate-store", "--from", src, "--to", "postgresql://armada:s3cret@127.0.0.1:1/armada",
                               cwd=self.tmp)
        self.assertEqual(code, 3, out + err)
        self.assertIn("cannot open the target store 'postgresql://armada:***@127.0.0.1:1/armada'", err)
        self.assertNotIn("s3cret", out + err)
        self.assertEqual(os.listdir(self.tmp), ["a"])   # nothing left behind


@unittest.skipIf(PG_MISSING, PG_MISSING or "")
class TestMigratePostgresql(MigrateCase):
    def setUp(self):
        super().setUp()
        self.pg = pgcluster.from_env()   # run-all's cluster, or one for this process

    def createdb(self):
        """A new database of the cluster, dropped after the test (armadads
        are stopped by then: cleanups run last-in, first-out)."""
        name = self.pg.createdb()
        self.addCleanup(self.pg.dropdb, name)
        return self.pg.url(name)

    def test_round_trip_sqlite_postgresql_sqlite(self):
        state, src, inv, ev, last_vm = self.populated_source()
        url = self.createdb()
        self.assert_migrated(*admin("migrate-store", "--from", "sqlite:" + src, "--to", url))
        d = self.daemon(state, url)
        self.assertEqual(inventory(d), inv)
        self.assertLessEqual(ev, events(d))
        inv2, ev2 = inventory(d), events(d)
        self.assertEqual(d.stop(), 0)
        back = os.path.join(self.tmp, "back.db")
        self.assert_migrated(*admin("migrate-store", "--from", url, "--to", "sqlite:" + back))
        self.assert_same_installation(state, back, inv2, ev2, last_vm)

    def test_target_with_rows_and_source_in_use_are_refused(self):
        state, src, *_ = self.populated_source()
        url = self.createdb()
        self.assert_migrated(*admin("migrate-store", "--from", src, "--to", url))
        with dbdirect.connect_url(url) as db:
            before = db.execute("SELECT count(*) FROM vm").fetchone()[0]
        code, out, err = admin("migrate-store", "--from", src, "--to", url)
        self.assertEqual(code, 3, out + err)
        self.assertIn("The target store already holds rows in table '", err)
        with dbdirect.connect_url(url) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM vm").fetchone()[0], before)
        # An armadad on the PostgreSQL store: it is the source in use now.
        self.daemon(state, url)
        code, out, err = admin("migrate-store", "--from", url, "--to", os.path.join(self.tmp, "n.db"))
        self.assertEqual(code, 3, out + err)
        self.assertIn("is armadad running on it?", err)


if __name__ == "__main__":
    unittest.main()
