"""Failover of the manager on the namespace test bed (issue 14): two
armadads on one store (a SQLite file, or with ARMADA_TEST_STORE=postgresql
one PostgreSQL database), three bed hosts in one failover cluster.

- kill -9 of the active manager while a job acts on a bed host (a stop
  that waits out a guest deaf to ACPI): the standby becomes active within
  the bound, resumes the job, and it ends correctly; VMs are neither lost
  nor doubled (virsh on every bed host agrees with Armada).
- HA keeps working after the takeover: a bed host is killed and its HA VM
  runs again on a survivor, exactly once.
- Split brain: the new active one is frozen (SIGSTOP) past its lease, the
  other takes over; thawed, the old one demotes itself and acts on no host
  (its log shows no job run and no failover decided after the thaw)."""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_bed import ArmadaBed  # noqa: E402
from armada_harness import Armadad, wait_until  # noqa: E402
from managers import SharedStore, freeze_past_lease, this_manager, wait_active, kill9  # noqa: E402
from testbed import kvm_usable, skip_reason  # noqa: E402

LEASE = ["--lease-ttl", "3s"]
BOUND_S = 10.0
DECLARE_MS = 3000
HA_BOUND_S = DECLARE_MS / 1000 + 7


class TestManagerFailover(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.store = SharedStore()
        cls.ab = None
        cls.b = None
        try:
            common = LEASE + ["--db", cls.store.db, "--monitor-interval-ms", "86400000"]
            cls.ab = ArmadaBed(3, declare_ms=DECLARE_MS, extra_args=common).__enter__()
            cls.a = cls.ab.d
            cls.b = Armadad(["--ha-declare-ms", str(DECLARE_MS), "--workers", "8"] + common).start()
            cls.b.token = cls.a.token
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.b:
                cls.b.cleanup()
            if cls.ab:
                cls.ab.__exit__(None, None, None)
        finally:
            cls.store.cleanup()

    def names_running(self):
        """{domain name: [bed hosts running it]} by virsh on every up host."""
        out = {}
        for h in self.ab.bed.hosts:
            if h.pid is None:
                continue
            for n in self.ab.bed.virsh(h.name, "list", "--name", check=False, timeout=20).split():
                out.setdefault(n, []).append(h.name)
        return out

    def assert_nothing_lost_or_doubled(self, d, names):
        running = self.names_running()
        for n, hosts in running.items():
            self.assertEqual(len(hosts), 1, f"{n} runs on {hosts}")
        for n in names:
            v = d.find("vms", n)
            self.assertIsNotNone(v, f"{n} is lost")
            if v["state"] == "running":
                self.assertEqual(running.get(n), [v["host_name"]], n)
            else:
                self.assertNotIn(n, running, n)

    def test_1_takeover_with_a_job_in_flight_then_ha(self):
        ab, a, b = self.ab, self.a, self.b
        self.assertTrue(this_manager(a, a.token)["active"])
        self.assertFalse(this_manager(b, a.token)["active"])
        stay = ab.create_vm("mgr-stay", "h2")
        deaf = ab.create_vm("mgr-deaf", "h1")   # firmware only: deaf to ACPI, a stop waits its timeout
        wait_until(lambda: a.vm(deaf["id"])["state"] == "running", 30, what="mgr-deaf to run")
        jid = a.ok("POST", f"/api/v1/vms/{deaf['id']}/actions/stop")["job"]["id"]
        wait_until(lambda: a.ok("GET", f"/api/v1/jobs/{jid}")["state"] == "running", 20, interval=0.05,
                   what="the stop to be in flight")
        t0 = time.monotonic()
        kill9(a)
        took = wait_active(b, b.token, BOUND_S + 5, t0)
        print(f"\nmanager takeover after kill -9 on the test bed: {took:.2f} s (lease TTL 3 s)")
        self.assertLessEqual(took, BOUND_S)
        job = b.wait_job(jid, timeout=90)
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(b.vm(deaf["id"])["state"], "stopped")
        self.assertEqual(b.vm(stay["id"])["state"], "running")
        self.assert_nothing_lost_or_doubled(b, ["mgr-stay", "mgr-deaf"])

        # HA after the takeover: the new active manager watches the cluster.
        wait_until(lambda: all(b.ok("GET", f"/api/v1/hosts/{i}")["state"] == "ok" for i in ab.host_id.values()), 60,
                   interval=0.2, what="the new active manager to connect every host")
        b.ok("PATCH", f"/api/v1/vms/{stay['id']}/ha", {"priority": "high"})
        time.sleep(1.0)  # armadad notes which VMs run on each member every 0.5 s
        t0 = time.monotonic()
        ab.bed.kill("h2")
        try:
            v = wait_until(lambda: (lambda r: r if r["state"] == "running" and r["host_name"] != "h2" else None)(b.vm(stay["id"])),
                           HA_BOUND_S + 5, interval=0.1, what="mgr-stay to run again after h2 died")
            # The bound is the wait above (HA's own timing is test_ha's subject;
            # this asserts that the new active manager does the failover).
            print(f"HA restart after the takeover: {time.monotonic() - t0:.1f} s")
            self.assertEqual(ab.running_on("mgr-stay"), [v["host_name"]])
        finally:
            ab.bed.start("h2")
        wait_until(lambda: b.ok("GET", f"/api/v1/hosts/{ab.host_id['h2']}")["state"] == "ok", 60, interval=0.2,
                   what="h2 back in service")
        self.assert_nothing_lost_or_doubled(b, ["mgr-stay", "mgr-deaf"])

    def test_2_split_brain_old_active_demotes_and_acts_on_nothing(self):
        ab, b = self.ab, self.b
        wait_active(b, b.token, 5)
        c = Armadad(["--ha-declare-ms", str(DECLARE_MS)] + LEASE + ["--db", self.store.db, "--monitor-interval-ms", "86400000"])
        self.addCleanup(c.cleanup)
        c.start()
        c.token = b.token
        self.assertFalse(this_manager(c, c.token)["active"])
        self.addCleanup(lambda: b.proc and b.proc.poll() is None and b.proc.send_signal(signal.SIGCONT))
        took = freeze_past_lease(b, c, c.token, self.store, BOUND_S)
        self.assertLessEqual(took, BOUND_S)
        # While the old one is frozen the new one runs jobs on the bed.
        vm_id = c.create_vm("mgr-split", "h3", start=False, domain_type="kvm" if kvm_usable() else "qemu")["id"]
        mark = len(b.log_text())
        b.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: "is demoted to standby" in b.log_text()[mark:], 20, what="the old active manager to demote itself")
        self.assertIn("is stale", b.log_text()[mark:])
        self.assertFalse(this_manager(b, c.token)["active"])
        jid = c.ok("POST", f"/api/v1/vms/{vm_id}/actions/start")["job"]["id"]
        self.assertEqual(c.wait_job(jid, timeout=60)["state"], "succeeded")
        tail = b.log_text()[mark:]
        self.assertNotRegex(tail, r"job \d+ \S+ on '[^']*' (succeeded|failed)")
        self.assertNotIn("declared failed", tail)
        self.assert_nothing_lost_or_doubled(c, ["mgr-split", "mgr-stay", "mgr-deaf"])


if __name__ == "__main__":
    unittest.main()
