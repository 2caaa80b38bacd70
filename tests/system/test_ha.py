"""System tests of failover clusters and maintenance mode on the namespace
test bed: four hosts in one cluster (3+1), armadad watching them.

- A host is killed (its whole PID namespace: power loss) while it runs HA
  VMs: every HA VM runs again on a survivor, exactly once (virsh on every
  host), within the target time; a non-HA VM and a stopped HA VM stay down;
  when the host boots again nothing runs twice, and a second start of a
  restarted VM's disk on it is refused (the disk lease / image lock).
- A stale copy started on a host that came back is destroyed and reported.
- Fencing fails: nothing is restarted, the VMs show as unknown, an error
  event is raised.
- Memory pressure: the survivor without room gets nothing; VMs that fit
  nowhere wait and start as soon as capacity appears.
- Maintenance with VMs that fit only when spread across hosts; VMs that
  cannot move keep the host in service unless forced (then they are saved).
"""
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_bed import ArmadaBed  # noqa: E402
from armada_harness import wait_until  # noqa: E402
from testbed import VirshError, skip_reason  # noqa: E402

DECLARE_MS = 3000
RESERVE_MIB = 512  # the default group's memory reserve


# The memory tests size their VMs from what the bed's hosts report (they
# share the machine's kernel, so its memory), never from fixed figures that
# need a big machine: placement counts allocations against it (no samples
# here), and a size derived as "memory minus a constant" turns negative on a
# small one. The VMs that really run a guest (restarted, migrated) stay small
# whatever the machine: a migration's target touches every page, and three
# 3000 MiB guests moving at once woke the OOM killer on a 24 GiB machine
# busy with other tests. The fillers only take room in placement's sums; a
# firmware guest never touches most of its memory.
def pressure_sizes(mem_mib):
    """test_4: (big, fill): three HA VMs of big MiB fit h1 together; after
    its filler, h2 has room for none of them, h3 and h4 for one each."""
    avail = mem_mib - RESERVE_MIB
    big = min(1024, avail // 4)
    fill = {"h2": avail - big // 2, "h3": avail - (big + big // 2), "h4": avail - (big + big // 2)}
    return big, fill


def maintenance_sizes(mem_mib):
    """test_5: (vm, fill, full): three VMs of vm MiB fit h1 together; after
    fill, h2, h3 and h4 have room for one each, not two; after full, a host
    has no room for one."""
    avail = mem_mib - RESERVE_MIB
    vm = min(512, avail // 3)
    return vm, avail - (vm + vm // 2), avail - vm // 2


class TestSizes(unittest.TestCase):
    """The sizes hold on any host from 2 GiB to 1 TiB (no test bed needed)."""

    def test_sizes_fit_any_host(self):
        for mem in list(range(2048, 65536, 128)) + [131072, 262144, 1048576]:
            avail = mem - RESERVE_MIB
            big, fill = pressure_sizes(mem)
            self.assertGreaterEqual(big, 128, mem)
            self.assertLessEqual(3 * big, avail, mem)
            self.assertTrue(all(f >= 64 for f in fill.values()), (mem, fill))
            self.assertLess(avail - fill["h2"], big, mem)
            for h in ("h3", "h4"):
                self.assertTrue(big <= avail - fill[h] < 2 * big, (mem, h))
            vm, mfill, full = maintenance_sizes(mem)
            self.assertGreaterEqual(vm, 128, mem)
            self.assertLessEqual(3 * vm, avail, mem)
            self.assertGreaterEqual(mfill, 64, mem)
            self.assertTrue(vm <= avail - mfill < 2 * vm, mem)
            self.assertLess(avail - full, vm, mem)
# From power loss to every HA VM running again: the declaration time, the
# fence command, a start per VM, plus the test's own polling of virsh.
FAILOVER_BOUND_S = DECLARE_MS / 1000 + 7


class TestHa(unittest.TestCase):
    ab = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        # The bed's hosts share one kernel, so the memory the monitor measures
        # is the same on all of them: these tests place by allocations, as
        # placement does when no fresh sample exists (no sampling here).
        cls.ab = ArmadaBed(4, declare_ms=DECLARE_MS, extra_args=["--monitor-interval-ms", "86400000"]).__enter__()

    @classmethod
    def tearDownClass(cls):
        if cls.ab:
            cls.ab.__exit__(None, None, None)

    def setUp(self):
        # Every test starts with every host up and in service, fenceable.
        ab = self.ab
        for h in ab.bed.hosts:
            ab.set_fence(h.name, ab.bed.fence_command(h.name))
            if h.pid is None:
                ab.bed.start(h.name)
        wait_until(lambda: all(ab.d.ok("GET", f"/api/v1/hosts/{i}")["state"] == "ok" for i in ab.host_id.values()), 60,
                   interval=0.2, what="every host to be in service")
        self.vms = []

    def tearDown(self):
        ab = self.ab
        for h in ab.bed.hosts:
            if h.pid is None:
                ab.bed.start(h.name)
        for vm_id in self.vms:
            self.drop(vm_id)

    def drop(self, vm_id):
        """Deletes a VM (when it still exists) and waits for it to be gone."""
        st, v = self.ab.d.request("GET", f"/api/v1/vms/{vm_id}")
        if st == 200:
            r = self.ab.d.request("DELETE", f"/api/v1/vms/{vm_id}")
            if r[0] == 202:
                self.ab.d.wait_job(r[1]["job"]["id"], timeout=60)

    def vm(self, name, host, **kw):
        v = self.ab.create_vm(name, host, **kw)
        self.vms.append(v["id"])
        return v

    def host_of(self, vm_id):
        return self.ab.d.vm(vm_id)["host_name"]

    def test_1_failover_restarts_ha_vms_exactly_once(self):
        ab = self.ab
        ha = {p: self.vm(f"ha-{p}", "h1", ha=p) for p in ("high", "medium", "low")}
        plain = self.vm("plain1", "h1")
        idle = self.vm("ha-idle", "h1", ha="high", start=False)
        self.assertEqual(sorted(ab.running_on("ha-high") + ab.running_on("plain1")), ["h1", "h1"])
        time.sleep(1.0)  # armadad notes which VMs run on each member every 0.5 s

        t0 = time.monotonic()
        ab.bed.kill("h1")
        back = {}

        def all_back():
            for p, v in ha.items():
                if p in back:
                    continue
                r = ab.d.vm(v["id"])
                if r["state"] == "running" and r["host_name"] != "h1":
                    back[p] = (time.monotonic() - t0, r["host_name"])
            return len(back) == len(ha)
        wait_until(all_back, FAILOVER_BOUND_S + 5, interval=0.05, what="every HA VM to run again")
        for p, (secs, host) in back.items():
            self.assertLess(secs, FAILOVER_BOUND_S, f"ha-{p} ran again only after {secs:.1f} s")
            # Exactly once, on the survivor Armada says.
            self.assertEqual(ab.running_on(f"ha-{p}"), [host])
        # The restarts of one failover run at once, not one after another:
        # armadad counts the starts in flight together (a start of a QEMU
        # takes a fraction of a second even under KVM, so parallel starts
        # issued together overlap; serialised ones never exceed one).
        summary = re.compile(r"failover of host 'h1': (\d+) of (\d+) HA VMs run again, \d+ ms after it stopped answering"
                             r" \(at most (\d+) starts at once\)")
        m = wait_until(lambda: summary.search(ab.d.log_text()), 30, interval=0.1, what="armadad's failover summary for h1")
        self.assertEqual((int(m.group(1)), int(m.group(2))), (len(ha), len(ha)))
        self.assertGreater(int(m.group(3)), 1, "the restarts of h1's HA VMs ran one after another")
        self.assertEqual(ab.running_on("plain1"), [])
        self.assertEqual(ab.d.vm(plain["id"])["state"], "stopped")
        self.assertEqual(ab.running_on("ha-idle"), [])
        self.assertNotEqual(ab.d.vm(idle["id"])["state"], "running")
        kinds = [e["kind"] for e in ab.events()]
        for k in ("host.failed", "host.fenced", "vm.restarted", "vm.down"):
            self.assertIn(k, kinds)
        self.assertEqual(ab.d.ok("GET", f"/api/v1/hosts/{ab.host_id['h1']}")["state"], "fenced")

        # h1 boots again: its old definitions are shut off, nothing runs twice.
        ab.bed.start("h1")
        wait_until(lambda: ab.d.ok("GET", f"/api/v1/hosts/{ab.host_id['h1']}")["state"] == "ok", 30, interval=0.2,
                   what="h1 to be back in service")
        for p, (_, host) in back.items():
            self.assertEqual(ab.running_on(f"ha-{p}"), [host])
        # The disk of a restarted VM cannot be opened on h1 as well.
        with self.assertRaises(VirshError) as cm:
            ab.bed.virsh("h1", "start", "ha-high")
        self.assertRegex(cm.exception.stderr, r"(?i)lock")
        self.assertEqual(ab.running_on("ha-high"), [back["high"][1]])

    def test_2_stale_copy_is_destroyed(self):
        ab = self.ab
        v = self.vm("ha-nodisk", "h2", ha="high", disk=None)
        time.sleep(1.0)
        ab.bed.kill("h2")
        wait_until(lambda: (lambda r: r["state"] == "running" and r["host_name"] != "h2")(ab.d.vm(v["id"])), FAILOVER_BOUND_S + 5,
                   interval=0.1, what="ha-nodisk to run again")
        new_host = self.host_of(v["id"])
        ab.bed.start("h2")
        # Behind Armada's back the old copy is started on h2 (no disk, so no
        # lock stops it): Armada must not let it run twice.
        ab.bed.virsh("h2", "start", "ha-nodisk")
        wait_until(lambda: ab.running_on("ha-nodisk") == [new_host], 15, interval=0.2,
                   what="the stale copy on h2 to be destroyed")
        self.assertEqual(self.host_of(v["id"]), new_host)
        self.assertIn("vm.stale-copy", [e["kind"] for e in ab.events()])

    def test_3_fence_failure_restarts_nothing(self):
        ab = self.ab
        v = self.vm("ha-unfenced", "h3", ha="high")
        ab.set_fence("h3", ["false"])
        time.sleep(1.0)
        ab.bed.kill("h3")
        wait_until(lambda: ab.events("ha.fence-failed"), DECLARE_MS / 1000 + 10, interval=0.1, what="the fence failure event")
        time.sleep(2.0)  # a restart, were there one, would be done by now
        self.assertEqual(ab.running_on("ha-unfenced"), [])
        r = ab.d.vm(v["id"])
        self.assertEqual((r["state"], r["host_name"]), ("unknown", "h3"))
        h = ab.d.ok("GET", f"/api/v1/hosts/{ab.host_id['h3']}")
        self.assertEqual(h["state"], "failed")
        self.assertIn("fencing failed", h["state_reason"])
        ev = ab.events("ha.fence-failed")[0]
        self.assertEqual(ev["severity"], "error")
        self.assertIn("'false' exited with status 1", ev["message"])

    def host_memory(self):
        """The smallest memory the bed's hosts report, in MiB."""
        return min(self.ab.d.ok("GET", f"/api/v1/hosts/{i}")["memory_mib"] for i in self.ab.host_id.values())

    def test_4_memory_pressure_and_pending(self):
        ab = self.ab
        size, fill = pressure_sizes(self.host_memory())
        fillers = {h: self.vm(f"fill-{h}", h, memory_mib=m, disk=None) for h, m in fill.items()}
        big = [self.vm(f"big-{p}", "h1", memory_mib=size, ha=p) for p in ("high", "medium", "low")]
        time.sleep(1.0)
        ab.bed.kill("h1")

        def settled():
            states = [ab.d.vm(b["id"]) for b in big]
            return states if sum(s["state"] == "running" for s in states) == 2 and ab.events("vm.restart-pending") else None
        states = wait_until(settled, FAILOVER_BOUND_S + 10, interval=0.1, what="two big VMs to run and one to wait")
        hosts = {s["name"]: s["host_name"] for s in states if s["state"] == "running"}
        # h2 lacks the memory: the VMs went to the next members, one each.
        self.assertEqual(sorted(hosts.values()), ["h3", "h4"], hosts)
        self.assertEqual(set(hosts), {"big-high", "big-medium"}, "priority order")
        low = ab.d.vm(big[2]["id"])
        self.assertEqual(low["state"], "pending")
        self.assertEqual(ab.running_on("big-low"), [])
        cl = ab.d.ok("GET", f"/api/v1/clusters/{ab.cluster_id}")
        self.assertEqual([p["vm_name"] for p in cl["pending"]], ["big-low"])

        # Capacity appears on h2: the waiting VM starts there by itself.
        ab.d.vm_action(fillers["h2"]["id"], "kill")
        wait_until(lambda: (lambda r: r["state"] == "running")(ab.d.vm(big[2]["id"])), 20, interval=0.2,
                   what="the waiting VM to start once h2 has room")
        self.assertEqual(self.host_of(big[2]["id"]), "h2")
        self.assertEqual(ab.running_on("big-low"), ["h2"])

    def test_5_maintenance_spreads_vms_and_refuses_what_cannot_move(self):
        ab = self.ab
        d = ab.d
        size, fill, full = maintenance_sizes(self.host_memory())
        # h2, h3, h4 each have room for one of the VMs, not two.
        fillers = [self.vm(f"mfill-{h}", h, memory_mib=fill, disk=None) for h in ("h2", "h3", "h4")]
        vms = [self.vm(f"m{i}", "h1", memory_mib=size) for i in range(3)]
        r = d.ok("POST", f"/api/v1/hosts/{ab.host_id['h1']}/maintenance", {"on": True})
        job = d.wait_job(r["job"]["id"], timeout=180)
        self.assertEqual(job["state"], "succeeded", job)
        where = sorted(self.host_of(v["id"]) for v in vms)
        self.assertEqual(where, ["h2", "h3", "h4"], "spread one per host")
        for i, v in enumerate(vms):
            self.assertEqual(ab.running_on(f"m{i}"), [self.host_of(v["id"])])
        self.assertEqual(d.ok("GET", f"/api/v1/hosts/{ab.host_id['h1']}")["state"], "maintenance")
        r = d.ok("POST", f"/api/v1/hosts/{ab.host_id['h1']}/maintenance", {"on": False})
        self.assertEqual(d.wait_job(r["job"]["id"])["state"], "succeeded")
        self.assertEqual(d.ok("GET", f"/api/v1/hosts/{ab.host_id['h1']}")["state"], "ok")

        # Now a VM that fits nowhere else: h2 stays in service, nothing moves.
        for v in fillers + vms:
            self.drop(v["id"])
        for h in ("h1", "h3", "h4"):
            self.vm(f"mfull-{h}", h, memory_mib=full, disk=None)
        huge = self.vm("m-huge", "h2", memory_mib=size, disk=None)
        r = d.ok("POST", f"/api/v1/hosts/{ab.host_id['h2']}/maintenance", {"on": True})
        job = d.wait_job(r["job"]["id"], timeout=120)
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("m-huge", job["error"])
        self.assertIn("m-huge", [c["vm"] for c in job["result"]["cannot_move"]])
        self.assertEqual(d.ok("GET", f"/api/v1/hosts/{ab.host_id['h2']}")["state"], "ok")
        self.assertEqual(self.host_of(huge["id"]), "h2")
        self.assertEqual(ab.running_on("m-huge"), ["h2"])
        # Forced: what cannot move is saved; the host enters maintenance.
        r = d.ok("POST", f"/api/v1/hosts/{ab.host_id['h2']}/maintenance", {"on": True, "force": True})
        job = d.wait_job(r["job"]["id"], timeout=180)
        self.assertEqual(job["state"], "succeeded", job)
        self.assertIn("m-huge", [s["vm"] for s in job["result"]["saved"]])
        self.assertIn(d.vm(huge["id"])["state"], ("saved", "stopped"))
        self.assertEqual(ab.running_on("m-huge"), [])
        self.assertRegex(ab.bed.virsh("h2", "dominfo", "m-huge"), r"Managed save:\s+yes")
        r = d.ok("POST", f"/api/v1/hosts/{ab.host_id['h2']}/maintenance", {"on": False})
        d.wait_job(r["job"]["id"])


if __name__ == "__main__":
    unittest.main()
