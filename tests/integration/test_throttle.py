"""Per-host throttles (issue 15): at most N domain starts in flight on one
host at once, the rest waiting in FIFO order with a step that says so, a
cancelled waiter leaving the queue, the host's own setting (POST/PATCH
/hosts, `armada host set`) over armadad's default (--max-parallel-starts).

A start that takes long is made with armadad's test hold (--test-hold-starts
FILE, test hosts only): a start on a test host of a VM named in FILE blocks
inside its start slot until the name goes, as a start blocked inside
libvirtd would. Every wait is on something armadad reports: a job's step,
its state, or armadad's log saying the hold has the start."""
import os
import shutil
import struct
import subprocess
import tempfile
import unittest
from datetime import datetime

from armada_harness import ARMADA, wait_until
from holdcase import HoldCase


def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


class ThrottleTestCase(HoldCase):
    """One armadad whose default is 2 starts per host, with a test hold."""
    ARGS = ["--workers", "8", "--max-parallel-starts", "2"]

    def hold_vm(self, name):
        self.set_held(self.held() + [name])
        self.addCleanup(self.release, name)

    @classmethod
    def release(cls, name):
        cls.set_held([n for n in cls.held() if n != name])

    @classmethod
    def release_all(cls):
        cls.set_held([])

    def wait_held(self, name):
        """Until armadad's log says the start of name sits in the hold."""
        needle = f"test hold: the start of VM '{name}'"
        wait_until(lambda: needle in self.d.log_text(), 20, what=f"the start of VM '{name}' to reach the test hold")

    # -- objects --
    def host(self, **kw):
        type(self).n += 1
        name = f"th{self.n}"
        h, job = self.d.add_host(name, self.d.test_node_uri(name), **kw)
        self.assertEqual(job["state"], "succeeded", job)
        self.addCleanup(self.d.request, "DELETE", f"/api/v1/hosts/{h['id']}?force=true")
        return h

    def vms(self, host, *names):
        return {n: self.d.create_vm(f"{host['name']}-{n}", host["name"]) for n in names}

    def start(self, vm):
        return self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/start")["job"]["id"]

    def job(self, job_id):
        return self.d.ok("GET", f"/api/v1/jobs/{job_id}")

    def wait_step(self, job_id, prefix, what):
        def seen():
            j = self.job(job_id)
            return j if (j["step"] or "").startswith(prefix) else None
        return wait_until(seen, 20, what=f"job {job_id} ({what}) to show a step starting {prefix!r}")

    def step_at(self, job, prefix):
        at = [s["at"] for s in job["steps"] if s["name"].startswith(prefix)]
        self.assertTrue(at, f"job {job['id']} has no step starting {prefix!r}: {[s['name'] for s in job['steps']]}")
        return ts(at[0])


class TestStartThrottle(ThrottleTestCase):
    def test_starts_wait_in_order_for_the_hosts_limit(self):
        h = self.host(max_parallel_starts=1)
        self.assertEqual(h["max_parallel_starts"], 1)
        v = self.vms(h, "a", "b", "c", "d")
        self.hold_vm(v["a"]["name"])
        ja = self.start(v["a"])
        self.wait_held(v["a"]["name"])
        waiting = f"waiting for a start slot on host '{h['name']}'"
        jobs = {}
        for ahead, n in enumerate(("b", "c", "d")):
            jobs[n] = self.start(v[n])
            j = self.wait_step(jobs[n], waiting, f"start of {n}")
            self.assertIn(f"(1 in flight, limit 1, {ahead} ahead)", j["step"])
            self.assertEqual(j["state"], "running")
        # None of them ran while a held the only slot.
        for n in ("b", "c", "d"):
            self.assertEqual(self.d.vm(v[n]["id"])["state"], "stopped")
        self.release(v["a"]["name"])
        done = {n: self.d.wait_job(jobs[n], timeout=30) for n in ("b", "c", "d")}
        done["a"] = self.d.wait_job(ja, timeout=30)
        for n, j in done.items():
            self.assertEqual(j["state"], "succeeded", j)
            self.assertEqual(self.d.vm(v[n]["id"])["state"], "running")
        # FIFO: each took the slot after the one queued before it.
        took = {n: self.step_at(done[n], "took a start slot") for n in ("b", "c", "d")}
        self.assertLessEqual(took["b"], took["c"])
        self.assertLessEqual(took["c"], took["d"])
        # a never waited: the slot was free.
        self.assertFalse([s for s in done["a"]["steps"] if s["name"].startswith("waiting for a start slot")])

    def test_a_cancelled_waiter_leaves_the_queue(self):
        h = self.host(max_parallel_starts=1)
        v = self.vms(h, "a", "b", "c")
        self.hold_vm(v["a"]["name"])
        ja = self.start(v["a"])
        self.wait_held(v["a"]["name"])
        waiting = f"waiting for a start slot on host '{h['name']}'"
        jb = self.start(v["b"])
        self.wait_step(jb, waiting, "start of b")
        jc = self.start(v["c"])
        self.assertIn("1 ahead", self.wait_step(jc, waiting, "start of c")["step"])
        self.d.ok("POST", f"/api/v1/jobs/{jb}/actions/cancel")
        b = self.d.wait_job(jb, timeout=20)
        self.assertEqual(b["state"], "cancelled", b)
        self.assertIn(f"Cancelled while waiting for a start slot on host '{h['name']}'", b["error"])
        # c moved up: b is out of the queue.
        wait_until(lambda: "0 ahead" in (self.job(jc)["step"] or ""), 20, what="job c to be first in the queue")
        self.release(v["a"]["name"])
        self.assertEqual(self.d.wait_job(jc, timeout=30)["state"], "succeeded")
        self.assertEqual(self.d.wait_job(ja, timeout=30)["state"], "succeeded")
        self.assertEqual(self.d.vm(v["b"]["id"])["state"], "stopped")
        # No slot leaked: a later start on the host does not wait.
        jb2 = self.d.wait_job(self.start(v["b"]), timeout=30)
        self.assertEqual(jb2["state"], "succeeded")
        self.assertFalse([s for s in jb2["steps"] if s["name"].startswith("waiting for a start slot")])

    def test_armadads_default_applies_without_a_host_setting(self):
        h = self.host()
        self.assertIsNone(h["max_parallel_starts"])
        v = self.vms(h, "a", "b", "c")
        self.hold_vm(v["a"]["name"])
        self.hold_vm(v["b"]["name"])
        ja, jb = self.start(v["a"]), self.start(v["b"])
        self.wait_held(v["a"]["name"])
        self.wait_held(v["b"]["name"])
        jc = self.start(v["c"])
        j = self.wait_step(jc, f"waiting for a start slot on host '{h['name']}'", "start of c")
        self.assertIn("(2 in flight, limit 2, 0 ahead)", j["step"])
        # Raising the host's limit lets the waiting start go at once, while
        # a and b still hold theirs.
        r = self.d.ok("PATCH", f"/api/v1/hosts/{h['id']}", {"max_parallel_starts": 3})
        self.assertEqual(r["max_parallel_starts"], 3)
        self.assertEqual(self.d.wait_job(jc, timeout=20)["state"], "succeeded")
        self.assertEqual(self.job(ja)["state"], "running")
        self.assertEqual(self.job(jb)["state"], "running")
        self.release(v["a"]["name"])
        self.release(v["b"]["name"])
        self.assertEqual(self.d.wait_job(ja, timeout=30)["state"], "succeeded")
        self.assertEqual(self.d.wait_job(jb, timeout=30)["state"], "succeeded")

    def test_create_with_start_takes_a_start_slot(self):
        h = self.host(max_parallel_starts=1)
        v = self.vms(h, "a")
        self.hold_vm(v["a"]["name"])
        ja = self.start(v["a"])
        self.wait_held(v["a"]["name"])
        r = self.d.ok("POST", "/api/v1/vms", {"name": f"{h['name']}-new", "host": h["name"], "cpus": 1, "memory_mib": 64,
                                            "force": True, "start": True})
        jn = r["job"]["id"]
        self.wait_step(jn, f"waiting for a start slot on host '{h['name']}'", "create with start")
        self.release(v["a"]["name"])
        self.assertEqual(self.d.wait_job(jn, timeout=30)["state"], "succeeded")
        self.assertEqual(self.d.vm(r["vm"]["id"])["state"], "running")
        self.assertEqual(self.d.wait_job(ja, timeout=30)["state"], "succeeded")


class TestDeployThrottle(ThrottleTestCase):
    def test_deploys_take_a_start_slot(self):
        # (A full copy's disk slot is not reached here: the test driver
        # cannot copy a file it does not hold.)
        share = os.path.join(self.tmp, "share")
        os.makedirs(share, exist_ok=True)
        with open(os.path.join(share, "base.qcow2"), "wb") as f:
            # A minimal qcow2 header (version 3): the test driver reads no more.
            f.write((b"QFI\xfb" + struct.pack(">IQIIQ", 3, 0, 0, 16, 1 << 30)).ljust(512, b"\0"))
        r = self.d.ok("POST", "/api/v1/library/shares", {"path": share})
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        t = self.d.ok("POST", "/api/v1/templates", {"name": "thtpl", "image": "base.qcow2", "cpus": 1, "memory_mib": 64})
        h = self.host(max_parallel_starts=1, max_parallel_disk_ops=1)
        names = [f"{h['name']}-dep-{i}" for i in (1, 2, 3)]
        for n in names:
            self.hold_vm(n)
        r = self.d.ok("POST", f"/api/v1/templates/{t['id']}/deploy",
                      {"name": f"{h['name']}-dep", "count": 3, "host": h["name"]})
        ids = [j["id"] for j in r["jobs"]]
        waiting = f"waiting for a start slot on host '{h['name']}'"

        def two_waiting():
            js = [self.job(i) for i in ids]
            return js if sum((j["step"] or "").startswith(waiting) for j in js) == 2 else None
        # One deploy holds the only start slot (in the hold); the two others
        # queue behind it, their disks and domains made.
        wait_until(two_waiting, 30, what="two deploys to wait for the start slot")
        self.release_all()
        done = [self.d.wait_job(i, timeout=30) for i in ids]
        for j in done:
            self.assertEqual(j["state"], "succeeded", j)
            self.assertEqual(j["result"]["disks"][0]["how"], "linked clone")
        waited = [j for j in done if any(s["name"].startswith(waiting) for s in j["steps"])]
        self.assertEqual(len(waited), 2)
        for n in names:
            self.assertEqual(self.d.find("vms", n)["state"], "running")


class TestThrottleSettings(ThrottleTestCase):
    def test_fields_are_checked_and_shown(self):
        uri = self.d.test_node_uri("thbad")
        for body, status, field in (({"max_parallel_starts": 0}, 422, "max_parallel_starts"),
                                    ({"max_parallel_disk_ops": 1001}, 422, "max_parallel_disk_ops"),
                                    ({"max_parallel_starts": "4"}, 400, "max_parallel_starts")):
            st, b = self.d.request("POST", "/api/v1/hosts", dict(body, name="thbad", uri=uri))
            self.assertEqual(st, status, b)
            self.assertEqual(b["error"]["field"], field)
        self.assertIsNone(self.d.find("hosts", "thbad"))   # nothing half-done
        h = self.host(max_parallel_starts=3, max_parallel_disk_ops=2)
        got = self.d.ok("GET", f"/api/v1/hosts/{h['id']}")
        self.assertEqual((got["max_parallel_starts"], got["max_parallel_disk_ops"]), (3, 2))
        st, b = self.d.request("PATCH", f"/api/v1/hosts/{h['id']}", {"name": "x"})
        self.assertEqual(st, 400, b)
        st, b = self.d.request("PATCH", f"/api/v1/hosts/{h['id']}", {"max_parallel_starts": -1})
        self.assertEqual((st, b["error"]["field"]), (422, "max_parallel_starts"))
        self.assertEqual(self.d.ok("GET", f"/api/v1/hosts/{h['id']}")["max_parallel_starts"], 3)
        # Changing a host is an administrator's: a read-only operator and a
        # delegated administrator whose scope holds the host get 403.
        self.d.ok("POST", "/api/v1/host-groups", {"path": "ThLab"})
        hl = self.host(group="ThLab")
        self.d.ok("POST", "/api/v1/users", {"name": "th-ro", "password": "th-ro-password", "role": "read-only"})
        self.d.ok("POST", "/api/v1/users", {"name": "th-deleg", "password": "th-deleg-pass", "role": "delegated-administrator",
                                           "scopes": ["ThLab"]})
        for user, pw in (("th-ro", "th-ro-password"), ("th-deleg", "th-deleg-pass")):
            tok = self.d.login(user, pw)
            st, b = self.d.request("PATCH", f"/api/v1/hosts/{hl['id']}", {"max_parallel_starts": 1}, token=tok)
            self.assertEqual(st, 403, (user, b))
        self.assertIsNone(self.d.ok("GET", f"/api/v1/hosts/{hl['id']}")["max_parallel_starts"])
        # null returns a setting to armadad's default; absent fields stay.
        r = self.d.ok("PATCH", f"/api/v1/hosts/{h['id']}", {"max_parallel_starts": None})
        self.assertEqual((r["max_parallel_starts"], r["max_parallel_disk_ops"]), (None, 2))

    def test_cli_sets_and_shows_them(self):
        home = tempfile.mkdtemp(prefix="armada-throttle-home-")
        self.addCleanup(shutil.rmtree, home, True)
        env = dict(os.environ, HOME=home, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, ASAN_OPTIONS="detect_leaks=0")

        def cli(*args, ok=True):
            r = subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=60)
            if ok:
                self.assertEqual(r.returncode, 0, f"armada {' '.join(args)}: {r.stderr}")
            return r
        uri = self.d.test_node_uri("thcli")
        cli("--wait", "host", "add", "thcli", "--uri", uri, "--max-parallel-starts", "5")
        h = self.d.find("hosts", "thcli")
        self.addCleanup(self.d.request, "DELETE", f"/api/v1/hosts/{h['id']}?force=true")
        self.assertEqual(h["max_parallel_starts"], 5)
        cli("host", "set", "thcli", "--max-parallel-disk-ops", "2", "--max-parallel-starts", "default")
        h = self.d.find("hosts", "thcli")
        self.assertEqual((h["max_parallel_starts"], h["max_parallel_disk_ops"]), (None, 2))
        out = cli("host", "show", "thcli").stdout
        self.assertRegex(out, r"Parallel starts:\s+armadad's default")
        self.assertRegex(out, r"Parallel disk ops:\s+2")
        r = cli("host", "set", "thcli", "--max-parallel-starts", "0", ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--max-parallel-starts must be a whole number from 1 to 1000", r.stderr)


if __name__ == "__main__":
    unittest.main()
