"""System tests of live migration through Armada on the namespace test bed
(two hosts in one cluster, disks on the cluster's shared storage):

- a firmware-only KVM guest moves (placement picks the target, then back
  with an explicit target); the job reports total time and downtime; virsh
  on both hosts agrees with Armada's record;
- a tiny Linux guest under TCG that keeps rewriting its memory is migrated
  with a bandwidth cap and the job is cancelled halfway: the VM keeps
  running on its source, nothing of it runs on the target, the record says so;
- a VM with its disk on host-local storage is refused without with_storage;
- bad requests get 4xx with the field named.
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_bed import ArmadaBed  # noqa: E402
from armada_harness import wait_until  # noqa: E402
from testbed import skip_reason  # noqa: E402


def passes(log):
    """How many times the tiny guest has rewritten its memory (its console)."""
    try:
        with open(log, errors="replace") as f:
            return f.read().count("armada-guest: pass ")
    except OSError:
        return 0


class TestMigration(unittest.TestCase):
    ab = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.ab = ArmadaBed(2).__enter__()

    @classmethod
    def tearDownClass(cls):
        if cls.ab:
            cls.ab.__exit__(None, None, None)

    def test_firmware_guest_moves_and_back(self):
        ab = self.ab
        vm = ab.create_vm("mig-fw", "h1", memory_mib=256)
        disk = vm.get("disks") or ab.d.vm(vm["id"])["disks"]
        self.assertTrue(disk[0]["path"].startswith(ab.shared + "/"), disk)
        self.assertEqual(ab.running_on("mig-fw"), ["h1"])

        job = ab.migrate(vm["id"])
        self.assertEqual(job["state"], "succeeded", job)
        res = job["result"]
        self.assertEqual(res["to"], "h2")
        self.assertTrue(res["shared_storage"])
        self.assertGreater(res["total_ms"], 0)
        self.assertIsNotNone(res["downtime_ms"])
        self.assertLess(res["downtime_ms"], 1000, res)
        self.assertEqual(ab.running_on("mig-fw"), ["h2"])
        self.assertNotIn("mig-fw", ab.bed.virsh("h1", "list", "--all", "--name").split())
        v = ab.d.vm(vm["id"])
        self.assertEqual((v["host_name"], v["state"]), ("h2", "running"))

        job = ab.migrate(vm["id"], to="h1")
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(job["result"]["to"], "h1")
        self.assertEqual(ab.running_on("mig-fw"), ["h1"])
        self.assertEqual(ab.d.vm(vm["id"])["host_name"], "h1")
        kinds = [e["kind"] for e in ab.events()]
        self.assertGreaterEqual(kinds.count("vm.migrated"), 2)

    def test_cancel_halfway_leaves_vm_on_source(self):
        from guest import GuestUnavailable, build_guest, guest_xml
        try:
            kernel, initrd = build_guest()
        except GuestUnavailable as e:
            self.skipTest(f"no tiny guest: {e}")
        ab = self.ab
        log = os.path.join(ab.bed.shared_dir, "dirty1.log")
        vm = ab.define_raw("h1", "dirty1", guest_xml("dirty1", kernel, initrd, memory_mib=256, dirty_mib=96, console_log=log))
        # The guest dirties memory before the migration starts.
        wait_until(lambda: passes(log) >= 1, 60, interval=0.2, what="the tiny guest to start dirtying memory")
        job = ab.migrate(vm["id"], wait=False, to="h2", bandwidth_mibs=16)
        wait_until(lambda: (lambda j: j if j["state"] == "running" and j["progress"] >= 12 else None)(
            ab.d.ok("GET", f"/api/v1/jobs/{job['id']}")), 60, interval=0.1, what="the migration to be under way")
        t0 = time.monotonic()
        ab.d.ok("POST", f"/api/v1/jobs/{job['id']}/actions/cancel")
        j = ab.d.wait_job(job["id"], timeout=60)
        self.assertEqual(j["state"], "cancelled", j)
        self.assertLess(time.monotonic() - t0, 10)
        self.assertEqual(ab.running_on("dirty1"), ["h1"])
        self.assertNotIn("dirty1", ab.bed.virsh("h2", "list", "--all", "--name").split())
        v = ab.d.vm(vm["id"])
        self.assertEqual((v["host_name"], v["state"]), ("h1", "running"))
        # Still alive and still writing after the cancel.
        self.assertEqual(ab.bed.virsh("h1", "domstate", "dirty1").strip(), "running")
        n = passes(log)
        wait_until(lambda: passes(log) > n, 30, interval=0.2, what="the guest to go on after the cancelled migration")
        ab.bed.virsh("h1", "destroy", "dirty1", check=False)

    def test_cli(self):
        import json
        import subprocess
        from armada_harness import ARMADA
        ab = self.ab

        def armada(*args, check=True):
            r = subprocess.run([ARMADA, "--server", ab.d.url, "--token", ab.d.token, *args], capture_output=True, text=True,
                               timeout=120)
            if check and r.returncode != 0:
                raise AssertionError(f"armada {' '.join(args)} exited {r.returncode}: {r.stderr}")
            return r
        out = armada("cluster", "list").stdout
        self.assertRegex(out, r"c1\s+h1,h2\s+" + ab.shared)
        cl = json.loads(armada("-o", "json", "cluster", "show", "c1").stdout)
        self.assertEqual([h["name"] for h in cl["hosts"]], ["h1", "h2"])
        fence = ab.bed.fence_command("h2")
        armada("host", "set-fence", "h2", "--", *fence)
        self.assertEqual(ab.d.ok("GET", f"/api/v1/hosts/{ab.host_id['h2']}/fencing")["command"], fence)
        ab.create_vm("mig-cli", "h1")
        self.assertIn("priority high", armada("vm", "ha", "mig-cli", "--priority", "high").stdout)
        r = armada("--wait", "vm", "migrate", "mig-cli", "--to", "h2")
        self.assertEqual(ab.running_on("mig-cli"), ["h2"])
        r = armada("vm", "migrate", "mig-cli", "--to", "h2", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already runs on host 'h2'", r.stderr)
        r = armada("--wait", "host", "maintenance", "on", "h2")
        self.assertEqual(ab.running_on("mig-cli"), ["h1"])
        self.assertEqual(ab.d.ok("GET", f"/api/v1/hosts/{ab.host_id['h2']}")["state"], "maintenance")
        armada("--wait", "host", "maintenance", "off", "h2")
        self.assertEqual(ab.d.ok("GET", f"/api/v1/hosts/{ab.host_id['h2']}")["state"], "ok")
        armada("cluster", "create", "c2", "--hosts", "h1", "--shared-storage", "/srv/x", check=False)
        r = armada("cluster", "create", "c3", "--hosts", "h9,h1", "--shared-storage", "/srv/x", check=False)
        self.assertIn("no host named 'h9'", r.stderr)

    def test_delete_leaves_a_disk_no_pool_holds(self):
        # The disk is on the cluster's shared storage; h1 stops listing it
        # (as a host that only received the VM by migration never had the
        # pool): deleting the VM must not claim the file removed.
        ab = self.ab
        d = ab.d
        vm = ab.create_vm("del-shared", "h1", start=False)
        path = d.vm(vm["id"])["disks"][0]["path"]
        self.assertTrue(path.startswith(ab.shared + "/"), path)
        pool = f"armada-cluster-{ab.cluster_id}"
        ab.bed.virsh("h1", "pool-destroy", pool)
        try:
            j = d.wait_job(d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])
            self.assertEqual(j["state"], "succeeded", j)
            self.assertEqual(j["result"]["disks_removed"], [])
            (left,) = j["result"]["disks_left"]
            self.assertEqual(left["path"], path)
            self.assertEqual(left["reason"], f"disk '{path}' was left in place: no storage pool on host 'h1' holds it")
            self.assertTrue(os.path.exists(path), "the file was left in place, as reported")
            ev = [e for e in ab.events("vm.deleted") if e["object_name"] == "del-shared"]
            self.assertIn("was left in place", ev[0]["message"])
            self.assertIsNone(d.find("vms", "del-shared"))
        finally:
            ab.bed.virsh("h1", "pool-start", pool, check=False)
            if os.path.exists(path):
                os.unlink(path)

    def test_bad_requests(self):
        ab = self.ab
        d = ab.d
        vm = ab.create_vm("mig-bad", "h1", disk=None)
        st, b = d.request("POST", f"/api/v1/vms/{vm['id']}/migrate", {"to": "nohost"})
        self.assertEqual((st, b["error"]["field"]), (422, "to"))
        st, b = d.request("POST", f"/api/v1/vms/{vm['id']}/migrate", {"speed": 1})
        self.assertEqual((st, b["error"]["field"]), (400, "speed"))
        st, b = d.request("POST", f"/api/v1/vms/{vm['id']}/migrate", {"to": "h1"})
        self.assertEqual(st, 409, b)
        st, b = d.request("PATCH", f"/api/v1/hosts/{ab.host_id['h1']}/fencing", {"command": "poweroff h1; rm -rf /"})
        self.assertEqual((st, b["error"]["field"]), (400, "command"))
        st, b = d.request("PATCH", f"/api/v1/vms/{vm['id']}/ha", {"priority": "urgent"})
        self.assertEqual((st, b["error"]["field"]), (400, "priority"))
        # A stopped VM does not live-migrate.
        d.vm_action(vm["id"], "kill")
        st, b = d.request("POST", f"/api/v1/vms/{vm['id']}/migrate", {})
        self.assertEqual(st, 409, b)

    def test_with_storage_moves_a_local_disk(self):
        # Runs last (by name): without the cluster, VM disks are on each
        # host's own pool, which no other host sees.
        ab = self.ab
        d = ab.d
        d.ok("DELETE", f"/api/v1/clusters/{ab.cluster_id}")
        try:
            vm = ab.create_vm("mig-local", "h1", memory_mib=128, disk="32M")
            path = d.vm(vm["id"])["disks"][0]["path"]
            self.assertFalse(path.startswith(ab.bed.shared_dir), path)
            st, b = d.request("POST", f"/api/v1/vms/{vm['id']}/migrate", {"to": "h2"})
            self.assertEqual(st, 202, b)
            j = d.wait_job(b["job"]["id"])
            self.assertEqual(j["state"], "failed")
            self.assertIn("with_storage", j["error"])
            self.assertEqual(ab.running_on("mig-local"), ["h1"])
            j = ab.migrate(vm["id"], to="h2", with_storage=True)
            self.assertEqual(j["state"], "succeeded", j)
            self.assertTrue(j["result"]["with_storage"])
            self.assertFalse(j["result"]["shared_storage"])
            self.assertEqual(ab.running_on("mig-local"), ["h2"])
            self.assertEqual(j["result"]["source_disks_removed"], [path])
            # The copy is h2's own file now; h1's is gone.
            vols = ab.bed.virsh("h2", "vol-list", "armada")
            self.assertIn(os.path.basename(path), vols)
            self.assertNotIn(os.path.basename(path), ab.bed.virsh("h1", "vol-list", "--pool", "armada", "--details",
                                                                   check=False))
        finally:
            c = d.ok("POST", "/api/v1/clusters", {"name": "c1", "hosts": ["h1", "h2"], "shared_storage": ab.shared})
            ab.cluster_id = c["id"]


if __name__ == "__main__":
    unittest.main()
