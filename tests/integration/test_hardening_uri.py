"""Integration tests for issue 10's host-URI and storage-path hardening: a
host URI is an allow-listed libvirt URI (never one that runs a program or
reads a file back), test: URIs only with --allow-test-hosts, a failed
connect never echoes libvirt's parse context (file contents) to a client,
hosts are the administrator's to add, remove and change, and pool paths and
cluster shared storage stay out of the system's directories."""
import json
import os
import shutil
import stat
import tempfile
import unittest

import dbdirect
from armada_harness import Armadad, wait_until


def marker_script(dirname):
    """A script that, if anything ever runs it, leaves a marker file."""
    marker = os.path.join(dirname, "ran")
    script = os.path.join(dirname, "x.sh")
    with open(script, "w") as f:
        f.write(f"#!/bin/sh\ntouch {marker}\nexec cat\n")
    os.chmod(script, stat.S_IRWXU)
    return script, marker


class UriCase(unittest.TestCase):
    """An armadad (ARGS, ALLOW_TEST_HOSTS) and a directory holding a script
    that leaves a marker if anything ever runs it."""
    ARGS = []
    ALLOW_TEST_HOSTS = True

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-uri-")
        cls.script, cls.marker = marker_script(cls.tmp)
        cls.d = Armadad(cls.ARGS, allow_test_hosts=cls.ALLOW_TEST_HOSTS)
        try:
            cls.d.start()
            cls.d.token = cls.d.login()
            cls._populate()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _populate(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)


class TestWithoutTestHosts(UriCase):
    """An armadad started without --allow-test-hosts (as in production)."""

    ARGS = ["--ensure-host", "boot1=test:///default"]
    ALLOW_TEST_HOSTS = False

    def db(self):
        return dbdirect.connect(self.d)

    def test_test_uris_are_refused_with_400(self):
        before = self.d.count("hosts")
        for uri in ("test:///default", "test:///etc/passwd", f"test://{self.d.dir}/var/initial-admin-password"):
            st, b = self.d.request("POST", "/api/v1/hosts", {"name": "t1", "uri": uri})
            self.assertEqual(st, 400, (uri, b))
            self.assertEqual(b["error"]["field"], "uri")
            self.assertIn("--allow-test-hosts", b["error"]["message"])
            self.assertNotIn("root:", json.dumps(b))
        self.assertEqual(self.d.count("hosts"), before)

    def test_ensure_host_with_a_test_uri_is_ignored(self):
        self.assertIsNone(self.d.find("hosts", "boot1"))
        self.assertIn("--ensure-host 'boot1': the URI is refused", self.d.log_text())

    def test_programs_and_unknown_parameters_are_refused(self):
        before = self.d.count("hosts")
        for uri, words in ((f"qemu+ext:///system?command={self.script}", "transport 'qemu+ext'"),
                           (f"qemu:///system?command={self.script}", "parameter 'command'"),
                           (f"qemu+ssh://h/system?%63ommand={self.script}", "parameter 'command'"),
                           (f"qemu+ssh://h/system?netcat={self.script}", "parameter 'netcat'"),
                           ("qemu+unix:///system?socket=/run/x", "transport 'qemu+unix'"),
                           ("qemu+ssh://h/system?socket=/run/x", "parameter 'socket'"),
                           ("QEMU+EXT:///system", "transport 'QEMU+EXT'")):
            st, b = self.d.request("POST", "/api/v1/hosts", {"name": "evil", "uri": uri})
            self.assertEqual(st, 400, (uri, b))
            self.assertEqual(b["error"]["field"], "uri")
            self.assertIn(words, b["error"]["message"])
        self.assertEqual(self.d.count("hosts"), before)
        self.assertFalse(os.path.exists(self.marker))

    def test_a_bad_uri_already_in_the_database_is_never_opened(self):
        # As an older Armada (or a hand-edited database) would have stored it.
        uri = f"qemu+ext:///system?command={self.script}"
        with self.db() as db:
            (host_id,) = db.execute("INSERT INTO host(name, uri, group_id, pool, pool_path, created_at)"
                                    " VALUES ('old1', ?, 1, 'armada', '/srv/x', 0) RETURNING id", (uri,)).fetchone()
        try:
            h = wait_until(lambda: (lambda h: h if h and h["state"] == "unreachable" else None)(self.d.find("hosts", "old1")), 20,
                           what="host old1 to be marked unreachable")
            self.assertIn("is refused", h["state_reason"])
            self.assertIn("transport 'qemu+ext'", h["state_reason"])
            # An explicit refresh fails the same way, with a sentence.
            r = self.d.ok("POST", f"/api/v1/hosts/{host_id}/actions/refresh")
            job = self.d.wait_job(r["job"]["id"])
            self.assertEqual(job["state"], "failed")
            self.assertIn("Cannot connect to host 'old1'", job["error"])
            self.assertIn("is refused", job["error"])
            events = self.d.ok("GET", "/api/v1/events?limit=200")["items"]
            self.assertTrue(any(e["kind"] == "host.unreachable" and e["object_name"] == "old1" for e in events), events)
            self.assertFalse(os.path.exists(self.marker), "the command of a stored qemu+ext URI ran")
        finally:
            self.d.ok("DELETE", f"/api/v1/hosts/{host_id}")

    def test_a_stored_test_uri_is_not_opened_without_the_flag(self):
        # libvirt's test driver would read the file; only the inventory's
        # own check (with armadad's --allow-test-hosts) stops this one.
        with self.db() as db:
            (host_id,) = db.execute("INSERT INTO host(name, uri, group_id, pool, pool_path, created_at)"
                                    " VALUES ('old2', 'test:///default', 1, 'armada', '/srv/x', 0) RETURNING id").fetchone()
        try:
            h = wait_until(lambda: (lambda h: h if h and h["state"] == "unreachable" else None)(self.d.find("hosts", "old2")), 20,
                           what="host old2 to be marked unreachable")
            self.assertIn("--allow-test-hosts", h["state_reason"])
            self.assertIsNone(h["cpus"], "the test driver was opened")
        finally:
            self.d.ok("DELETE", f"/api/v1/hosts/{host_id}")


class TestWithTestHosts(UriCase):
    """The integration suite's armadad: --allow-test-hosts."""

    @classmethod
    def _populate(cls):
        d = cls.d
        d.ok("POST", "/api/v1/host-groups", {"path": "Lab"})
        d.add_host("lab1", "test:///default", group="Lab")
        d.add_host("lab2", d.test_node_uri("lab2"), group="Lab")
        d.ok("POST", "/api/v1/users", {"name": "deleg", "password": "deleg-pass", "role": "delegated-administrator", "scopes": ["Lab"]})
        cls.deleg = d.login("deleg", "deleg-pass")

    def test_ext_transport_is_refused_and_never_runs(self):
        before = self.d.count("hosts")
        for uri in (f"qemu+ext:///system?command={self.script}", f"qemu+ext:///system?command={self.script}&no_verify=1",
                    f"qemu:///system?command={self.script}", f"qemu+ssh://localhost/system?%63ommand={self.script}"):
            st, b = self.d.request("POST", "/api/v1/hosts", {"name": "evil", "uri": uri})
            self.assertEqual(st, 400, (uri, b))
            self.assertEqual(b["error"]["field"], "uri")
        self.assertEqual(self.d.count("hosts"), before)
        # A whole refresh round later, still nothing has run it.
        r = self.d.ok("POST", f"/api/v1/hosts/{self.d.find('hosts', 'lab1')['id']}/actions/refresh")
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        self.assertFalse(os.path.exists(self.marker))

    def test_a_file_named_by_a_test_uri_never_reaches_a_client(self):
        secret = "ARMADA-LEAK-MARKER-7f3a"
        path = os.path.join(self.tmp, "secret.txt")
        with open(path, "w") as f:
            f.write(f"{secret}:x:0:0:root:/root:/bin/sh\nsecond line {secret}\n")
        r = self.d.ok("POST", "/api/v1/hosts", {"name": "leaky", "uri": f"test://{path}"})
        host_id = r["host"]["id"]
        try:
            job = self.d.wait_job(r["job"]["id"])
            self.assertEqual(job["state"], "failed")
            self.assertIn("Cannot connect to host 'leaky'", job["error"])
            wait_until(lambda: self.d.ok("GET", f"/api/v1/hosts/{host_id}")["state"] == "unreachable", 20,
                       what="host leaky to be unreachable")
            wait_until(lambda: any(e["kind"] == "host.unreachable" and e["object_name"] == "leaky"
                                   for e in self.d.ok("GET", "/api/v1/events?limit=500")["items"]), 20,
                       what="the host.unreachable event")
            seen = []
            for path_ in ("/api/v1/hosts", f"/api/v1/hosts/{host_id}", "/api/v1/jobs?limit=500", f"/api/v1/jobs/{job['id']}",
                          "/api/v1/events?limit=500", "/api/v1/alerts", "/api/v1/health"):
                st, b = self.d.request("GET", path_)
                seen.append((path_, st))
                self.assertNotIn(secret, json.dumps(b), path_)
            self.assertTrue(all(st == 200 for _, st in seen), seen)
            # libvirt's whole message goes to the log, for the administrator.
            self.assertIn(secret, self.d.log_text())
        finally:
            self.d.ok("DELETE", f"/api/v1/hosts/{host_id}")
            os.unlink(path)

    def test_delegated_admin_cannot_add_or_remove_hosts(self):
        d = self.d
        before = d.count("hosts")
        st, b = d.request("POST", "/api/v1/hosts", {"name": "lab9", "uri": "qemu+tcp://10.0.0.9/system", "group": "Lab"},
                          token=self.deleg)
        self.assertEqual(st, 403, b)
        self.assertEqual(d.count("hosts"), before)
        lab2 = d.find("hosts", "lab2")
        self.assertEqual(d.request("DELETE", f"/api/v1/hosts/{lab2['id']}", token=self.deleg)[0], 403)
        self.assertEqual(d.request("DELETE", f"/api/v1/hosts/{lab2['id']}?force=true", token=self.deleg)[0], 403)
        self.assertIsNotNone(d.find("hosts", "lab2"))
        # It still sees and operates the hosts of its scope.
        self.assertEqual({h["name"] for h in d.ok("GET", "/api/v1/hosts", token=self.deleg)["items"]}, {"lab1", "lab2"})
        r = d.ok("POST", f"/api/v1/hosts/{lab2['id']}/actions/refresh", token=self.deleg)
        self.assertEqual(d.wait_job(r["job"]["id"], token=self.deleg)["state"], "succeeded")
        r = d.ok("POST", f"/api/v1/hosts/{lab2['id']}/maintenance", {"on": True}, token=self.deleg)
        self.assertEqual(d.wait_job(r["job"]["id"], token=self.deleg)["state"], "succeeded")
        r = d.ok("POST", f"/api/v1/hosts/{lab2['id']}/maintenance", {"on": False}, token=self.deleg)
        self.assertEqual(d.wait_job(r["job"]["id"], token=self.deleg)["state"], "succeeded")
        denied = [a for a in d.ok("GET", "/api/v1/audit?limit=100")["items"] if a["user_name"] == "deleg" and a["result"] == "denied"]
        self.assertGreaterEqual(len(denied), 3)

    def test_pool_path_outside_system_directories(self):
        before = self.d.count("hosts")
        for p in ("/etc/x", "/etc", "/usr/lib/x", "/boot/x", "/proc/x", "/sys/x", "/dev/shm/x", "/", "//etc//x/", "/srv/../etc/x",
                  "/./usr/x"):
            st, b = self.d.request("POST", "/api/v1/hosts", {"name": "p1", "uri": "test:///default", "pool_path": p})
            self.assertEqual(st, 400, (p, b))
            self.assertEqual(b["error"]["field"], "pool_path")
        self.assertEqual(self.d.count("hosts"), before)
        # A path is kept normalised.
        r = self.d.ok("POST", "/api/v1/hosts", {"name": "p2", "uri": self.d.test_node_uri("p2"), "pool_path": "/srv//armada/pool/"})
        try:
            self.assertEqual(r["host"]["pool_path"], "/srv/armada/pool")
            self.d.wait_job(r["job"]["id"])
        finally:
            self.d.ok("DELETE", f"/api/v1/hosts/{r['host']['id']}")

    def test_cluster_shared_storage(self):
        d = self.d
        for p in ("/usr/lib/x", "/etc/armada", "/", "/srv/../usr/x", "relative"):
            st, b = d.request("POST", "/api/v1/clusters", {"name": "c1", "hosts": ["lab1", "lab2"], "shared_storage": p})
            self.assertEqual(st, 400, (p, b))
            self.assertEqual(b["error"]["field"], "shared_storage")
        # Administrator-only, even over hosts in the caller's scope.
        st, b = d.request("POST", "/api/v1/clusters", {"name": "c1", "hosts": ["lab1", "lab2"], "shared_storage": "/srv/shared"},
                          token=self.deleg)
        self.assertEqual(st, 403, b)
        self.assertEqual(d.ok("GET", "/api/v1/clusters")["items"], [])
        c = d.ok("POST", "/api/v1/clusters", {"name": "c1", "hosts": ["lab1", "lab2"], "shared_storage": "/srv//shared/"})
        try:
            self.assertEqual(c["shared_storage"], "/srv/shared")
            self.assertEqual(d.request("DELETE", f"/api/v1/clusters/{c['id']}", token=self.deleg)[0], 403)
        finally:
            d.ok("DELETE", f"/api/v1/clusters/{c['id']}")


if __name__ == "__main__":
    unittest.main()
