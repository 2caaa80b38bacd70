"""System test (issue 12), heavy: a real virt-v2v conversion boots on virtio.

The guest is a Debian 12 installed the way a physical or foreign machine
would be (tests/guest/debian_image.py: root /dev/sda1 in fstab, GRUB, an
initramfs with the IDE/SATA drivers and no virtio_blk, a unit that prints a
marker on ttyS0 once userspace is up), offered to armadad as a VMDK on the
test bed's shared storage and imported onto a test-bed host (real libvirtd,
QEMU under TCG) whose pool is on that storage too, so virt-v2v runs in place
on the volume:

- imported with v2v never, the VM (virtio disk, as every import) does not
  reach userspace: its initramfs gives up waiting for the root device and
  the marker never comes;
- imported with v2v always, the job's result says virt-v2v ran and
  converted the guest, the domain's disk is virtio, and the VM boots to the
  marker, with its root on /dev/vda1.

Heavy (the image's debootstrap once, minutes, cached under
/var/cache/armada-test/; then virt-v2v under TCG and two TCG boots): make
check skips it; ARMADA_HEAVY=1 runs it, and bench/convert-v2v runs it and
writes the timings to bench/results/convert.md. It prints its timings on
stderr as `v2v-timing NAME SECONDS` lines.
"""
import os
import re
import shutil
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "guest"))

from armada_harness import wait_until  # noqa: E402
from bedcase import ArmadaBedCase  # noqa: E402
from debian_image import MARKER, ImageUnavailable, build_image, image_path  # noqa: E402
from test_hardware_kvm import SerialConsole  # noqa: E402

# What Debian's initramfs prints when it cannot find the root device, and
# the shell it drops to then.
NO_ROOT = re.compile(r"Gave up waiting for root|ALERT!.*does not exist|\(initramfs\)")
MEMORY_MIB = 512


def timing(name, secs):
    print(f"v2v-timing {name} {secs:.1f}", file=sys.stderr, flush=True)


class TestV2vDebianKvm(ArmadaBedCase):
    TMP_PREFIX = "armada-v2v-sys-"

    @classmethod
    def skip_reason(cls):
        if os.environ.get("ARMADA_HEAVY") != "1":
            return ("heavy (debootstrap of a Debian image once, then virt-v2v and two boots under TCG, ~10 min):"
                    " make bench runs it with ARMADA_HEAVY=1")
        for tool in ("virt-v2v-in-place", "qemu-img", "debootstrap"):
            if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
                return f"'{tool}' is not installed (scripts/bootstrap)"
        return None

    @classmethod
    def prepare(cls):
        had = os.path.exists(image_path())
        t0 = time.monotonic()
        try:
            raw = build_image()
        except ImageUnavailable as e:
            raise unittest.SkipTest(f"the Debian image cannot be built: {e}")
        timing("image_build" if not had else "image_cached", time.monotonic() - t0)
        cls.share = os.path.join(cls.tmp, "share")
        os.makedirs(cls.share)
        cls.vmdk = os.path.join(cls.share, "foreign.vmdk")
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", raw, cls.vmdk], check=True, timeout=600)

    @classmethod
    def bed_args(cls):
        # The pool on the bed's shared storage: armadad writes the volume
        # itself and virt-v2v converts it in place.
        return {"n_hosts": 1, "cluster": False,
                "host_args": lambda bed, h: {"pool": "shared1", "pool_path": os.path.join(bed.shared_dir, "pool-h1")}}

    @classmethod
    def bed_ready(cls):
        cls.add_share(cls.share)

    def remove_vm(self, name):
        vm = self.d.find("vms", name)
        if not vm:
            return
        if vm["state"] != "stopped":
            self.d.wait_job(self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/kill")["job"]["id"], timeout=120)
        self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"], timeout=300)

    def import_vm(self, name, v2v, timeout):
        self.addCleanup(self.remove_vm, name)
        r = self.d.ok("POST", "/api/v1/vms/import", {"path": self.vmdk, "name": name, "host": "h1", "cpus": 1,
                                                      "memory_mib": MEMORY_MIB, "v2v": v2v})
        t0 = time.monotonic()
        job = self.d.wait_job(r["job"]["id"], timeout=timeout)
        self.assertEqual(job["state"], "succeeded", job)
        return job, time.monotonic() - t0

    def tcg(self, name):
        """The domain under TCG (type qemu). The bed's host offers KVM when
        /dev/kvm opens, but on this CI machine (nested) a guest that boots
        through GRUB hangs at "GRUB loading" under it (QEMU warns the host
        lacks CPUID pni); TCG is what this test measures."""
        xml = self.ab.bed.virsh("h1", "dumpxml", "--inactive", name)
        if "<domain type='qemu'" in xml:
            return
        self.assertIn("<domain type='kvm'", xml)
        path = os.path.join(self.tmp, f"{name}.xml")
        with open(path, "w") as f:
            f.write(xml.replace("<domain type='kvm'", "<domain type='qemu'", 1))
        self.ab.bed.virsh("h1", "define", path)

    def boot(self, name, until, timeout):
        """Starts the VM under TCG, returns (console text once until()
        matched it, seconds from the start job's end)."""
        self.tcg(name)
        vm = self.d.find("vms", name)
        start = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/start")
        self.assertEqual(self.d.wait_job(start["job"]["id"], timeout=120)["state"], "succeeded")
        t0 = time.monotonic()
        con = SerialConsole(self.ab.bed.host("h1").uri, name)
        try:
            wait_until(lambda: until(con.text()), timeout, interval=1, what=f"{name}'s serial console")
            return con.text(), time.monotonic() - t0
        finally:
            con.close()

    def test_1_unconverted_does_not_boot_on_virtio(self):
        job, secs = self.import_vm("raw-foreign", "never", 900)
        self.assertFalse(job["result"]["v2v"]["ran"], job["result"])
        self.assertIn("bus='virtio'", self.ab.bed.virsh("h1", "dumpxml", "raw-foreign"))
        text, secs = self.boot("raw-foreign", lambda t: NO_ROOT.search(t) or MARKER in t, 900)
        timing("unconverted_boot_to_no_root", secs)
        self.assertNotIn(MARKER, text)
        self.assertRegex(text, NO_ROOT)
        self.remove_vm("raw-foreign")

    def test_2_converted_boots_on_virtio(self):
        job, secs = self.import_vm("converted", "always", 3600)
        timing("import_job", secs)
        v2v = job["result"]["v2v"]
        timing("virt_v2v", v2v.get("seconds", 0))
        print(f"v2v-backend {v2v.get('backend')}", file=sys.stderr, flush=True)
        self.assertEqual((v2v["ran"], v2v["converted"]), (True, True), v2v)
        self.assertIn(v2v["backend"], ("kvm", "tcg"))
        xml = self.ab.bed.virsh("h1", "dumpxml", "converted")
        self.assertIn("bus='virtio'", xml)
        self.assertNotIn("bus='sata'", xml)
        text, secs = self.boot("converted", lambda t: MARKER in t or NO_ROOT.search(t), 1200)
        timing("converted_boot_to_marker", secs)
        self.assertNotRegex(text, NO_ROOT)
        m = re.search(re.escape(MARKER) + r" root=(\S+)", text)
        self.assertIsNotNone(m, text[-2000:])
        self.assertEqual(m.group(1), "/dev/vda1", text[-2000:])
        self.remove_vm("converted")


if __name__ == "__main__":
    unittest.main()
