"""System test of failover running off the watch thread, on the namespace
test bed: four hosts in two clusters, A = {h1, h2} and B = {h3, h4}.

h1's fence command takes SLOW_FENCE_S seconds. h1 is killed first; once
armadad has declared it failed (its fence is running), h3 is killed. Every
h3 must be declared failed and fenced within the declaration time plus a
bound, while h1's fence is still running (h1 not yet "fenced", its VM not
started anywhere: the rule "fence first" holds); every HA VM of h3 must run
again on h4, and armadad must report that h3's restarts overlapped (more
than one start in flight at once). Then h1's fence ends and its VM runs
again on h2, after h1's host.fenced event.

Before failover had a worker per failing member, the watch thread ran h1's
fence itself: h3 was not even declared failed until that fence was over.
"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_bed import ArmadaBed  # noqa: E402
from armada_harness import wait_until  # noqa: E402
from testbed import skip_reason  # noqa: E402

DECLARE_MS = 2000
SLOW_FENCE_S = 15
N_VMS = 6


class TestParallelFailover(unittest.TestCase):
    ab = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.ab = ArmadaBed(4, declare_ms=DECLARE_MS, cluster=False,
                           extra_args=["--monitor-interval-ms", "86400000"]).__enter__()
        try:
            for name, hosts in (("cA", ["h1", "h2"]), ("cB", ["h3", "h4"])):
                shared = os.path.join(cls.ab.bed.shared_dir, name)
                os.makedirs(shared, exist_ok=True)
                cls.ab.d.ok("POST", "/api/v1/clusters", {"name": name, "hosts": hosts, "shared_storage": shared, "tolerate": 1})
        except BaseException:
            cls.ab.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.ab:
            cls.ab.__exit__(None, None, None)

    def host(self, name):
        return self.ab.d.ok("GET", f"/api/v1/hosts/{self.ab.host_id[name]}")

    def test_slow_fence_in_one_cluster_holds_up_no_other(self):
        ab = self.ab
        ab.set_fence("h1", ["sh", "-c", f'sleep {SLOW_FENCE_S} && exec "$@"', "slow-fence"] + ab.bed.fence_command("h1"))
        a_vm = ab.create_vm("pa-0", "h1", disk=None, ha="high")
        b_vms = [ab.create_vm(f"pb-{i}", "h3", disk=None, ha=("high", "medium", "low")[i % 3]) for i in range(N_VMS)]
        try:
            time.sleep(1.0)  # armadad notes which VMs run on each member every 0.5 s
            ab.bed.kill("h1")
            wait_until(lambda: self.host("h1")["state"] == "failed", DECLARE_MS / 1000 + 10, interval=0.05,
                       what="h1 to be declared failed (its slow fence running)")
            t0 = time.monotonic()
            ab.bed.kill("h3")
            # h3 is declared failed and fenced while h1's fence still runs.
            wait_until(lambda: self.host("h3")["state"] == "fenced", SLOW_FENCE_S + 20, interval=0.05, what="h3 to be fenced")
            fenced_after = time.monotonic() - t0
            h1 = self.host("h1")
            self.assertEqual(h1["state"], "failed", "h3 was fenced only after h1's slow fence was over")
            self.assertNotIn("fencing failed", h1.get("state_reason") or "")
            self.assertLess(fenced_after, DECLARE_MS / 1000 + 5, "h3's failover waited")
            self.assertEqual(ab.running_on("pa-0"), [])

            wait_until(lambda: all((lambda r: r["state"] == "running" and r["host_name"] == "h4")(ab.d.vm(v["id"])) for v in b_vms),
                       60, interval=0.1, what="every HA VM of h3 to run again on h4")
            for v in b_vms:
                self.assertEqual(ab.running_on(v["name"]), ["h4"])
            # The starts of h3's VMs overlapped (armadad's own count).
            m = re.search(r"failover of host 'h3': (\d+) of (\d+) HA VMs run again, \d+ ms after it stopped answering"
                          r" \(at most (\d+) starts at once\)", ab.d.log_text())
            self.assertIsNotNone(m, "armadad's failover summary for h3")
            self.assertEqual((int(m.group(1)), int(m.group(2))), (N_VMS, N_VMS))
            self.assertGreater(int(m.group(3)), 1, "h3's restarts ran one after another")

            # h1's fence ends: then, and only then, its VM runs on h2.
            wait_until(lambda: (lambda r: r["state"] == "running" and r["host_name"] == "h2")(ab.d.vm(a_vm["id"])),
                       SLOW_FENCE_S + 30, interval=0.1, what="h1's VM to run again on h2 after its fence")
            self.assertEqual(self.host("h1")["state"], "fenced")
            self.assertEqual(ab.running_on("pa-0"), ["h2"])
            ev = ab.events()
            first = {}
            for e in sorted(ev, key=lambda e: e["id"]):
                first.setdefault((e["kind"], e["object_name"]), e["id"])
            # Events by id (the order armadad recorded them): h3's whole
            # failover before h1's fence ended, h1's restart after it.
            self.assertLess(first[("host.fenced", "h3")], first[("host.fenced", "h1")])
            self.assertLess(first[("host.fenced", "h1")], first[("vm.restarted", "pa-0")])
        finally:
            for h in ("h1", "h3"):
                if ab.bed.host(h).pid is None:
                    ab.bed.start(h)
            for v in [a_vm] + b_vms:
                r = ab.d.request("DELETE", f"/api/v1/vms/{v['id']}")
                if r[0] == 202:
                    ab.d.wait_job(r[1]["job"]["id"], timeout=60)


if __name__ == "__main__":
    unittest.main()
