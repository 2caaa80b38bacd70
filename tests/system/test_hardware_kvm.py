"""A VM's virtual hardware on real QEMU through Armada, on the namespace test
bed (issue 12):

- a bootable ISO made here (isolinux + the hardware guest's kernel and
  initramfs, tests/guest/guest.py) is put in a library share; a blank VM (no
  disk) gets it in a CD-ROM drive Armada adds, boots from the CD first, starts,
  and the guest's marker shows on its serial console (read through `virsh
  console` on a pty);
- on that running guest: the balloon takes memory away live (virsh dumpxml's
  currentMemory, and the guest's MemTotal drops), a second vCPU is hotplugged
  (virsh vcpucount, and the guest counts two), a new disk is hotplugged and
  grown (virsh domblklist, and the guest sees vda with the new size), the CD is
  ejected and inserted again live, the disk is unplugged again;
- a stopped VM's changes are staged in its definition (virsh dumpxml
  --inactive) and its new disk's volume is created, grown and deleted.
"""
import os
import pty
import re
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_harness import wait_until  # noqa: E402
from bedcase import ArmadaBedCase  # noqa: E402

MIB = 1 << 20
HW_LINE = re.compile(r"armada-hw: mem_kb=(\d+) cpus=(\d+) disks=(\S*)")


class SerialConsole:
    """`virsh console` of a domain on a pty of its own; text() is all it
    printed so far."""
    def __init__(self, uri, name):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(["virsh", "-c", uri, "console", name, "--force"], stdin=slave, stdout=slave,
                                     stderr=slave, close_fds=True, start_new_session=True)
        os.close(slave)
        self.buf = b""
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.buf += data

    def text(self):
        with self.lock:
            return self.buf.decode(errors="replace")

    def last_hw(self):
        """The guest's last report: (mem_kb, cpus, {disk: sectors}) or None."""
        m = HW_LINE.findall(self.text())
        if not m:
            return None
        mem, cpus, disks = m[-1]
        sizes = dict(d.split(":") for d in disks.split(",") if ":" in d)
        return int(mem), int(cpus), {k: int(v) for k, v in sizes.items()}

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        os.close(self.master)


class TestHardwareKvm(ArmadaBedCase):
    TMP_PREFIX = "armada-hw-sys-"

    @classmethod
    def prepare(cls):
        from guest import GuestUnavailable, build_boot_iso, build_hw_guest
        try:
            kernel, initrd = build_hw_guest()
            cls.share = os.path.join(cls.tmp, "library")
            os.makedirs(cls.share)
            build_boot_iso(kernel, initrd, os.path.join(cls.share, "armada-hw.iso"))
        except GuestUnavailable as e:
            raise unittest.SkipTest(f"no hardware guest or ISO: {e}")
        os.chmod(cls.tmp, 0o755)

    @classmethod
    def bed_args(cls):
        return {"n_hosts": 1, "cluster": False}

    @classmethod
    def bed_ready(cls):
        cls.add_share(cls.share)

    # -- helpers --
    def virsh(self, *args, check=True):
        return self.ab.bed.virsh("h1", *args, check=check)

    def patch_hw(self, vm_id, **body):
        return self.ab.d.ok("PATCH", f"/api/v1/vms/{vm_id}/hardware", body)

    def cd_insert(self, vm_id, iso):
        r = self.ab.d.ok("POST", f"/api/v1/vms/{vm_id}/cd", {"iso": iso})
        job = self.ab.d.wait_job(r["job"]["id"], timeout=300)
        self.assertEqual(job["state"], "succeeded", job)
        return job["result"]

    def vol_exists(self, path):
        self.virsh("pool-refresh", "armada", check=False)
        return bool(self.virsh("vol-info", path, check=False).strip())

    def delete_vm(self, vm_id):
        st, b = self.ab.d.request("DELETE", f"/api/v1/vms/{vm_id}")
        if st == 202:
            self.ab.d.wait_job(b["job"]["id"], timeout=120)

    # -- tests --
    def test_1_boot_from_library_iso_then_change_it_live(self):
        ab, d = self.ab, self.ab.d
        vm = d.create_vm("hw-iso", "h1", memory_mib=256, domain_type="qemu")   # TCG: see guest.py
        i = vm["id"]
        self.addCleanup(self.delete_vm, i)
        # Staged while stopped: room for a second vCPU, the ISO, the boot order.
        r = self.patch_hw(i, max_cpus=2)
        self.assertEqual(r["applied"], {"max_cpus": "next_boot"})
        res = self.cd_insert(i, "armada-hw.iso")
        self.assertEqual((res["drive"], res["applied"]), ("hdc", "next_boot"))
        d.ok("PUT", f"/api/v1/vms/{i}/boot-order", {"order": ["cd", "disk"]})
        xml = self.virsh("dumpxml", "hw-iso", "--inactive")
        self.assertRegex(xml, r"<boot dev='cdrom'/>\s*<boot dev='hd'/>")
        self.assertRegex(xml, r"(?s)<disk type='file' device='cdrom'>.*?<source file='[^']*'/>.*?<target dev='hdc' bus='ide'/>")
        self.assertRegex(xml, r"<vcpu placement='static' current='1'>2</vcpu>")

        job = d.vm_action(i, "start")
        self.assertEqual(job["state"], "succeeded", job)
        con = SerialConsole(ab.bed.host("h1").uri, "hw-iso")
        self.addCleanup(con.close)
        wait_until(lambda: con.last_hw(), 240, interval=0.5, what="the guest booted from the ISO to report on its console")
        self.assertIn("armada-hw:", con.text())
        mem0, cpus0, disks0 = con.last_hw()
        self.assertEqual(cpus0, 1)
        self.assertEqual(disks0, {}, "booted from the CD: no disk at all")

        # Memory: the balloon, live.
        r = self.patch_hw(i, memory_mib=160)
        self.assertEqual(r["applied"], {"memory_mib": "live"})
        self.assertEqual(d.vm(i)["memory_mib"], 160)
        wait_until(lambda: con.last_hw()[0] <= mem0 - 60 * 1024, 120, interval=0.5,
                   what=f"the guest's MemTotal to drop from {mem0} kB")
        # libvirt shows the balloon's size once the guest has let go.
        wait_until(lambda: "<currentMemory unit='KiB'>163840</currentMemory>" in self.virsh("dumpxml", "hw-iso"), 60,
                   interval=0.5, what="libvirt's live currentMemory to follow")
        self.assertIn("<memory unit='KiB'>262144</memory>", self.virsh("dumpxml", "hw-iso"))

        # vCPUs: a hotplug up to the maximum, live; past it, for the next boot.
        r = self.patch_hw(i, cpus=2)
        self.assertEqual(r["applied"], {"cpus": "live"})
        self.assertEqual(self.virsh("vcpucount", "hw-iso", "--live", "--active").strip(), "2")
        wait_until(lambda: con.last_hw()[1] == 2, 120, interval=0.5, what="the guest to count two vCPUs")
        self.assertEqual(d.vm(i)["cpus"], 2)
        r = self.patch_hw(i, cpus=3)
        self.assertEqual(r["applied"], {"cpus": "next_boot"})
        self.assertEqual(self.virsh("vcpucount", "hw-iso", "--live", "--active").strip(), "2")

        # A disk: hotplugged, grown, unplugged.
        r = d.ok("POST", f"/api/v1/vms/{i}/disks", {"size": "64M"})
        # The VM has no disk: the new one is its first, vda.
        self.assertEqual((r["disk"]["target"], r["applied"]), ("vda", "live"))
        vol = r["disk"]["path"]
        self.assertIn("vda", self.virsh("domblklist", "hw-iso"))
        wait_until(lambda: con.last_hw()[2].get("vda") == 64 * MIB // 512, 120, interval=0.5, what="the guest to see vda")
        r = d.ok("PATCH", f"/api/v1/vms/{i}/disks/vda", {"size": "128M"})
        self.assertEqual(r["applied"], "live")
        wait_until(lambda: con.last_hw()[2].get("vda") == 128 * MIB // 512, 120, interval=0.5, what="the guest to see vda grow")
        st, b = d.request("PATCH", f"/api/v1/vms/{i}/disks/vda", {"size": "64M"})
        self.assertEqual((st, b["error"]["field"]), (400, "size"))

        # The CD: out and in again, live.
        r = d.ok("DELETE", f"/api/v1/vms/{i}/cd")
        self.assertEqual((r["drive"], r["applied"]), ("hdc", "live"))
        self.assertNotRegex(self.virsh("dumpxml", "hw-iso"), r"device='cdrom'>\s*<driver[^>]*/>\s*<source file=")
        res = self.cd_insert(i, "armada-hw.iso")
        self.assertEqual(res["applied"], "live")
        self.assertRegex(self.virsh("dumpxml", "hw-iso"), r"(?s)device='cdrom'>.*?<source file=")

        st, b = d.request("DELETE", f"/api/v1/vms/{i}/disks/vda")
        if st == 409:
            self.skipTest(f"the guest did not release the hotplugged disk: {b}")
        self.assertEqual(st, 200, b)
        self.assertEqual((b["applied"], b["volume_deleted"]), ("live", True))
        self.assertNotIn("vda", self.virsh("domblklist", "hw-iso"))
        self.assertFalse(self.vol_exists(vol))
        wait_until(lambda: "vda" not in con.last_hw()[2], 60, interval=0.5, what="the guest to lose vda")
        self.assertIn("armada-guest: init reached", con.text())

    def test_2_stopped_vm_changes_wait_in_its_definition(self):
        ab, d = self.ab, self.ab.d
        vm = d.create_vm("hw-cold", "h1", memory_mib=64, disk_size="16M", domain_type="qemu")
        i = vm["id"]
        self.addCleanup(self.delete_vm, i)
        r = self.patch_hw(i, cpus=2, memory_mib=128)
        self.assertEqual(r["applied"], {"cpus": "next_boot", "memory_mib": "next_boot"})
        xml = self.virsh("dumpxml", "hw-cold", "--inactive")
        self.assertRegex(xml, r"<vcpu placement='static'>2</vcpu>")
        self.assertIn("<currentMemory unit='KiB'>131072</currentMemory>", xml)
        r = d.ok("POST", f"/api/v1/vms/{i}/disks", {"size": "32M"})
        self.assertEqual((r["disk"]["target"], r["applied"]), ("vdb", "next_boot"))
        vol = r["disk"]["path"]
        self.assertRegex(self.virsh("dumpxml", "hw-cold", "--inactive"), r"<target dev='vdb' bus='virtio'/>")
        self.assertRegex(self.virsh("vol-info", vol), r"Capacity:\s+32\.00 MiB")
        r = d.ok("PATCH", f"/api/v1/vms/{i}/disks/vdb", {"size": "48M"})
        self.assertEqual(r["applied"], "next_boot")
        self.assertRegex(self.virsh("vol-info", vol), r"Capacity:\s+48\.00 MiB")
        r = d.ok("DELETE", f"/api/v1/vms/{i}/disks/vdb")
        self.assertEqual((r["applied"], r["volume_deleted"]), ("next_boot", True))
        self.assertFalse(self.vol_exists(vol))
        self.assertNotIn("vdb", self.virsh("dumpxml", "hw-cold", "--inactive"))


if __name__ == "__main__":
    unittest.main()
