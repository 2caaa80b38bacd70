"""Snapshots on real QEMU through Armada, on the namespace test bed (two hosts
in one cluster, disks on the cluster's shared storage):

- a stopped VM's disk holds known data; a snapshot; the data changes; revert;
  the image holds the data of the snapshot again (read with qemu-io), and the
  snapshot is an internal one inside the qcow2 image (qemu-img snapshot -l);
- a running tiny Linux guest under TCG (it writes its pass count to its
  serial log) with a qcow2 disk: a snapshot with memory, the disk changes
  (qemu-io through the monitor, QEMU's block layer), revert: the VM runs
  again, the disk holds the data of then, and the guest goes on from the
  moment of the snapshot (its log repeats pass numbers it had printed);
- a VM with a disk-only and a memory snapshot live-migrates (the metadata is
  set aside and redefined on the target), reverts there, and is evacuated by
  host maintenance with them; the disk-only one brings its data back; a
  cancelled migration gives them back to the source;
- checkpoints (the backup engineer's dirty-bitmap objects) and internal
  snapshots live side by side on libvirt 9.0, but QEMU cannot revert a disk
  that carries dirty bitmaps: the revert deletes the checkpoints (event),
  then works;
- an HA failover restarts a VM with snapshots on the survivor, whose libvirt
  is given them back from Armada's copy when they are listed; a revert there
  works.
"""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_bed import ArmadaBed, qemu_img  # noqa: E402
from armada_harness import wait_until  # noqa: E402
from testbed import skip_reason  # noqa: E402

MIB = 1 << 20


def qemu_io_read(path, pattern, offset=0, length=MIB):
    """Whether the image at path holds pattern at offset (qemu-io -P)."""
    r = subprocess.run(["qemu-io", "-r", "-U", "-f", "qcow2", "-c", f"read -P {pattern:#x} {offset} {length}", path],
                       capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and "Pattern verification failed" not in r.stdout + r.stderr and "read " in r.stdout


def qemu_io_write(path, pattern, offset=0, length=MIB):
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {pattern:#x} {offset} {length}", path], check=True,
                   capture_output=True, timeout=60)


def passes(log):
    """The pass numbers the tiny guest printed on its console, in order."""
    try:
        with open(log, errors="replace") as f:
            return [int(n) for n in re.findall(r"armada-guest: pass (\d+)", f.read())]
    except OSError:
        return []


class TestSnapshotKvm(unittest.TestCase):
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

    # -- helpers --
    def snap(self, vm_id, **body):
        r = self.ab.d.ok("POST", f"/api/v1/vms/{vm_id}/snapshots", body)
        return self.ab.d.wait_job(r["job"]["id"], timeout=300)

    def act(self, method, path):
        r = self.ab.d.ok(method, path, {} if method == "POST" else None)
        return self.ab.d.wait_job(r["job"]["id"], timeout=300)

    def hmp(self, host, dom, cmd):
        return self.ab.bed.virsh(host, "qemu-monitor-command", dom, "--hmp", cmd)

    def write_live(self, host, dom, path, pattern):
        """Writes 1 MiB of pattern at offset 0 of the disk at path of a
        running domain through QEMU's block layer (qemu-io on the monitor,
        by the guest device the image is attached to: the format node
        itself is write-locked by that device)."""
        info = self.hmp(host, dom, "info block")
        m = re.search(re.escape(path) + r".*?\n\s*Attached to:\s*(\S+)", info)
        self.assertIsNotNone(m, info)
        out = self.hmp(host, dom, f'qemu-io -d {m.group(1)} "write -P {pattern:#x} 0 1M"')
        self.assertNotRegex(out, r"(?i)error|conflict|denied", out)

    # -- tests --
    def test_1_stopped_vm_disk_comes_back(self):
        ab, d = self.ab, self.ab.d
        vm = ab.create_vm("snap-cold", "h1", disk="32M", start=False)
        path = d.vm(vm["id"])["disks"][0]["path"]
        try:
            qemu_io_write(path, 0x11)
            job = self.snap(vm["id"], name="before")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertFalse(job["result"]["has_memory"])
            info = subprocess.run(["qemu-img", "snapshot", "-U", "-l", path], capture_output=True, text=True, timeout=30).stdout
            self.assertIn("before", info, "an internal snapshot inside the qcow2 image")
            qemu_io_write(path, 0x22)
            self.assertTrue(qemu_io_read(path, 0x22))
            job = self.act("POST", f"/api/v1/vms/{vm['id']}/snapshots/before/revert")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertEqual(job["result"]["state"], "stopped")
            self.assertTrue(qemu_io_read(path, 0x11), "the data of the snapshot is back")
            self.assertFalse(qemu_io_read(path, 0x22))
            self.assertEqual(ab.bed.virsh("h1", "domstate", "snap-cold").strip(), "shut off")
        finally:
            d.wait_job(d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])
        self.assertFalse(os.path.exists(path), "deleting the VM deletes its image and the snapshots in it")

    def tiny_guest(self, name, cluster_storage=False):
        """Defines and starts the tiny Linux guest under TCG with a qcow2 (v3)
        disk of its own, behind Armada's back; Armada discovers it. Returns
        (VM, disk path, console log)."""
        from guest import GuestUnavailable, build_guest, guest_xml
        try:
            kernel, initrd = build_guest()
        except GuestUnavailable as e:
            self.skipTest(f"no tiny guest: {e}")
        ab = self.ab
        # On the cluster's shared storage when it is to migrate.
        disk = os.path.join(ab.shared if cluster_storage else ab.bed.shared_dir, f"{name}.qcow2")
        os.makedirs(os.path.dirname(disk), exist_ok=True)
        qemu_img(disk, "32M")
        self.addCleanup(lambda: os.path.exists(disk) and os.unlink(disk))
        self.addCleanup(lambda: ab.bed.virsh("h1", "undefine", name, "--snapshots-metadata", "--checkpoints-metadata",
                                             check=False))
        self.addCleanup(lambda: ab.bed.virsh("h1", "destroy", name, check=False))
        log = os.path.join(ab.bed.shared_dir, f"{name}.log")
        xml = guest_xml(name, kernel, initrd, memory_mib=192, dirty_mib=4, console_log=log)
        xml = xml.replace("<memballoon model='none'/>", "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                          f"<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>\n    <memballoon model='none'/>")
        return ab.define_raw("h1", name, xml), disk, log

    def test_2_running_guest_reverts_with_memory(self):
        ab, d = self.ab, self.ab.d
        vm, disk, log = self.tiny_guest("snap-live")
        try:
            wait_until(lambda: len(passes(log)) >= 2, 90, interval=0.2, what="the tiny guest to run")
            self.write_live("h1", "snap-live", disk, 0x33)
            # A running VM's snapshot carries its memory without being asked.
            st, b = d.request("POST", f"/api/v1/vms/{vm['id']}/snapshots", {"name": "x", "memory": False})
            self.assertEqual((st, b["error"]["field"]), (409, "memory"))
            job = self.snap(vm["id"], name="live", description="guest running")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertTrue(job["result"]["has_memory"])
            at_snap = passes(log)
            self.assertTrue(at_snap)
            self.write_live("h1", "snap-live", disk, 0x44)
            wait_until(lambda: len(passes(log)) >= len(at_snap) + 2, 60, interval=0.2, what="the guest to go on after the snapshot")
            before = passes(log)
            job = self.act("POST", f"/api/v1/vms/{vm['id']}/snapshots/live/revert")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertEqual(job["result"]["state"], "running")
            self.assertEqual(ab.bed.virsh("h1", "domstate", "snap-live").strip(), "running")
            self.assertEqual(d.vm(vm["id"])["state"], "running")
            # Alive after the revert, and from the moment of the snapshot: it
            # prints again pass numbers it had printed before (the first
            # lines after `before` may still come from before the revert).
            wait_until(lambda: len(passes(log)) >= len(before) + 3, 60, interval=0.2, what="the guest to go on after the revert")
            after = passes(log)[len(before):]
            self.assertLessEqual(min(after), max(before), (before[-5:], after[:5]))
            self.assertLessEqual(min(after), at_snap[-1] + 2, (at_snap[-3:], after[:5]))
            self.assertGreater(after[-1], min(after), "the guest goes on counting after the revert")
            lst = d.ok("GET", f"/api/v1/vms/{vm['id']}/snapshots")
            self.assertEqual(lst["current"], "live")
            self.assertEqual(lst["snapshots"][0]["description"], "guest running")
            # The disk holds the data of the snapshot's moment (read once
            # QEMU has let go of the image).
            ab.bed.virsh("h1", "destroy", "snap-live")
            self.assertTrue(qemu_io_read(disk, 0x33), "the disk is back at the snapshot")
            self.assertFalse(qemu_io_read(disk, 0x44))
        finally:
            ab.bed.virsh("h1", "destroy", "snap-live", check=False)

    def virsh_snapshots(self, host, dom):
        out = self.ab.bed.virsh(host, "snapshot-list", dom, "--name", check=False)
        return sorted(out.split())

    def names(self, vm_id):
        lst = self.ab.d.ok("GET", f"/api/v1/vms/{vm_id}/snapshots")
        return [s["name"] for s in lst["snapshots"]], lst["current"]

    def test_3_migration_carries_the_snapshots(self):
        ab, d = self.ab, self.ab.d
        vm = ab.create_vm("snap-mig", "h1", memory_mib=128, disk="16M", start=False)
        path = d.vm(vm["id"])["disks"][0]["path"]
        h2_maintenance = False
        try:
            # A disk-only snapshot of the stopped VM, with known data ...
            qemu_io_write(path, 0x55)
            job = self.snap(vm["id"], name="cold")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertFalse(job["result"]["has_memory"])
            qemu_io_write(path, 0x66)
            # ... and one with memory once it runs.
            r = d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/start")
            self.assertEqual(d.wait_job(r["job"]["id"])["state"], "succeeded")
            job = self.snap(vm["id"], name="warm")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertTrue(job["result"]["has_memory"])
            self.assertEqual(self.virsh_snapshots("h1", "snap-mig"), ["cold", "warm"])

            # libvirt refuses a domain with snapshot metadata; Armada sets it
            # aside, migrates, and redefines it on the target.
            job = ab.migrate(vm["id"], to="h2")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertEqual(ab.running_on("snap-mig"), ["h2"])
            self.assertEqual(self.virsh_snapshots("h2", "snap-mig"), ["cold", "warm"], "h2's libvirt knows them")
            self.assertEqual(self.names(vm["id"]), (["cold", "warm"], "warm"))
            self.assertEqual(d.vm(vm["id"])["snapshots"], 2)
            # A revert with memory works on the new host.
            job = self.act("POST", f"/api/v1/vms/{vm['id']}/snapshots/warm/revert")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertEqual(job["result"]["state"], "running")
            self.assertEqual(ab.bed.virsh("h2", "domstate", "snap-mig").strip(), "running")

            # Maintenance of h2 evacuates the VM, snapshots and all.
            r = d.ok("POST", f"/api/v1/hosts/{ab.host_id['h2']}/maintenance", {"on": True})
            h2_maintenance = True
            job = d.wait_job(r["job"]["id"], timeout=300)
            self.assertEqual(job["state"], "succeeded", job)
            self.assertEqual(ab.running_on("snap-mig"), ["h1"])
            self.assertEqual(self.virsh_snapshots("h1", "snap-mig"), ["cold", "warm"])
            self.assertEqual(self.names(vm["id"]), (["cold", "warm"], "warm"))

            # The disk-only one brings the data of then back after two moves.
            job = self.act("POST", f"/api/v1/vms/{vm['id']}/snapshots/cold/revert")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertEqual(job["result"]["state"], "stopped")
            self.assertTrue(qemu_io_read(path, 0x55), "the data of the snapshot is back")
            self.assertFalse(qemu_io_read(path, 0x66))
        finally:
            if h2_maintenance:
                r = d.ok("POST", f"/api/v1/hosts/{ab.host_id['h2']}/maintenance", {"on": False})
                d.wait_job(r["job"]["id"])
            d.wait_job(d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])

    def test_4_revert_drops_the_checkpoints(self):
        ab, d = self.ab, self.ab.d
        vm, disk, log = self.tiny_guest("snap-ckpt")
        def virsh(*args):
            r = subprocess.run(["virsh", "-c", ab.bed.host("h1").uri, *args], capture_output=True, text=True, timeout=120)
            return r.returncode, (r.stdout + r.stderr).strip()
        # On libvirt 9.0 / QEMU 7.2 a checkpoint does not stop a snapshot,
        # nor a snapshot a checkpoint: both live in the qcow2 image ...
        self.assertEqual(virsh("checkpoint-create-as", "snap-ckpt", "c1")[0], 0)
        job = self.snap(vm["id"], name="s1")
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(virsh("checkpoint-create-as", "snap-ckpt", "c2")[0], 0)
        # Deleting a snapshot is fine beside them.
        self.assertEqual(self.snap(vm["id"], name="s2")["state"], "succeeded")
        self.assertEqual(self.act("DELETE", f"/api/v1/vms/{vm['id']}/snapshots/s2")["state"], "succeeded")
        self.assertEqual(virsh("checkpoint-list", "snap-ckpt", "--name")[1].split(), ["c1", "c2"])
        # ... but QEMU will not load a snapshot into a disk with dirty
        # bitmaps: the revert deletes the checkpoints (the backup chain gives
        # way, with an event) and then works; the VM runs on.
        job = self.act("POST", f"/api/v1/vms/{vm['id']}/snapshots/s1/revert")
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(job["result"]["state"], "running")
        self.assertEqual(ab.bed.virsh("h1", "domstate", "snap-ckpt").strip(), "running")
        rc, out = virsh("checkpoint-list", "snap-ckpt", "--name")
        self.assertEqual((rc, out.split()), (0, []), "the checkpoints are gone")
        ev = [e for e in ab.events("vm.backup-chain-broken") if e["object_id"] == vm["id"]]
        self.assertEqual(len(ev), 1, ev)
        self.assertIn("2 checkpoints", ev[0]["message"])
        self.assertIn("full", ev[0]["message"])
        # The guest goes on after the revert.
        n = len(passes(log))
        wait_until(lambda: len(passes(log)) >= n + 2, 60, interval=0.2, what="the guest to go on after the revert")

    def test_4b_cancelled_migration_gives_the_snapshots_back(self):
        # The metadata set aside for a migration goes back to the source when
        # the migration does not happen (here: cancelled halfway).
        ab, d = self.ab, self.ab.d
        vm, disk, log = self.tiny_guest("snap-back", cluster_storage=True)
        wait_until(lambda: len(passes(log)) >= 1, 90, interval=0.2, what="the tiny guest to run")
        job = self.snap(vm["id"], name="keep")
        self.assertEqual(job["state"], "succeeded", job)
        job = ab.migrate(vm["id"], wait=False, to="h2", bandwidth_mibs=1)
        j = wait_until(lambda: (lambda j: j if j["state"] != "queued" and (j["progress"] >= 11 or j["state"] != "running") else None)(
            d.ok("GET", f"/api/v1/jobs/{job['id']}")), 60, interval=0.1, what="the migration to be under way")
        self.assertEqual(j["state"], "running", j)
        self.assertEqual(self.virsh_snapshots("h1", "snap-back"), [], "set aside while it migrates")
        d.ok("POST", f"/api/v1/jobs/{job['id']}/actions/cancel")
        j = d.wait_job(job["id"], timeout=60)
        self.assertEqual(j["state"], "cancelled", j)
        self.assertEqual(ab.running_on("snap-back"), ["h1"])
        # Given back by the job itself, before anything lists them.
        self.assertEqual(self.virsh_snapshots("h1", "snap-back"), ["keep"])
        self.assertEqual(self.names(vm["id"]), (["keep"], "keep"))
        self.assertEqual([e for e in ab.events("vm.snapshots-restored") if e["object_id"] == vm["id"]], [])

    def test_5_failover_restarts_a_vm_with_snapshots(self):
        # Runs last (by name): h1 dies. The VM restarts on h2 from its saved
        # definition; its snapshot is still inside the qcow2 on the shared
        # storage, but h2's libvirt has no metadata for it: Armada lists none
        # there (documented in docs/architecture.md, Protection).
        import time
        ab, d = self.ab, self.ab.d
        vm = ab.create_vm("snap-ha", "h1", memory_mib=128, disk="16M", ha="high")
        path = d.vm(vm["id"])["disks"][0]["path"]
        job = self.snap(vm["id"], name="pre-failover")
        self.assertEqual(job["state"], "succeeded", job)
        time.sleep(1.0)  # armadad notes which VMs run on each member every 0.5 s
        ab.bed.kill("h1")
        try:
            ab.wait_vm(vm["id"], lambda v: v["state"] == "running" and v["host_name"] == "h2", 30,
                       "the VM to run again on h2")
            self.assertEqual(ab.running_on("snap-ha"), ["h2"])
            info = subprocess.run(["qemu-img", "snapshot", "-U", "-l", path], capture_output=True, text=True, timeout=30).stdout
            self.assertIn("pre-failover", info, "the snapshot is still inside the image")
            self.assertEqual(self.virsh_snapshots("h2", "snap-ha"), [], "h2's libvirt never knew it")
            # Armada kept its XML and gives it back to h2 when it is read.
            self.assertEqual(self.names(vm["id"]), (["pre-failover"], "pre-failover"))
            self.assertEqual(self.virsh_snapshots("h2", "snap-ha"), ["pre-failover"])
            self.assertEqual(d.vm(vm["id"])["snapshots"], 1)
            ev = [e for e in ab.events("vm.snapshots-restored") if e["object_id"] == vm["id"]]
            self.assertEqual(len(ev), 1, ev)
            self.assertIn("h2", ev[0]["message"])
            # A revert there works (with the memory of then).
            job = self.act("POST", f"/api/v1/vms/{vm['id']}/snapshots/pre-failover/revert")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertEqual(job["result"]["state"], "running")
            self.assertEqual(ab.running_on("snap-ha"), ["h2"])
            # A new snapshot on h2 works.
            job = self.snap(vm["id"], name="after-failover")
            self.assertEqual(job["state"], "succeeded", job)
            self.assertEqual(self.names(vm["id"])[0], ["pre-failover", "after-failover"])
        finally:
            ab.bed.start("h1")
            wait_until(lambda: d.ok("GET", f"/api/v1/hosts/{ab.host_id['h1']}")["state"] == "ok", 60, interval=0.2,
                       what="h1 to be back in service")
            d.wait_job(d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])


if __name__ == "__main__":
    unittest.main()
