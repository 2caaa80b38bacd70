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
  marker, with its root on /dev/vda1;
- the same image as a "physical server" (a loop device read over SSH from a
  network namespace, tests/lib/p2v_server.py) converted by P2V (v2v auto:
  P2V is always foreign) into raw volumes on the bed's shared storage:
  virt-v2v runs in place on them, the disks move from SATA to virtio, and
  the VM boots to the marker on /dev/vda1; the server's disk is unchanged.

Heavy (the image's debootstrap once, minutes, cached under
/var/cache/armada-test/; then virt-v2v under TCG and two TCG boots): make
check skips it; ARMADA_HEAVY=1 runs it, and bench/convert-v2v runs it and
writes the timings to bench/results/convert.md. It prints its timings on
stderr as `v2v-timing NAME SECONDS` lines.
"""
import hashlib
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
from p2v_server import SshServer, release_server, skip_reason as ssh_skip  # noqa: E402
from test_hardware_kvm import SerialConsole  # noqa: E402

# What Debian's initramfs prints when it cannot find the root device, and
# the shell it drops to then.
NO_ROOT = re.compile(r"Gave up waiting for root|ALERT!.*does not exist|\(initramfs\)")
MEMORY_MIB = 512


def timing(name, secs):
    print(f"v2v-timing {name} {secs:.1f}", file=sys.stderr, flush=True)


def heavy_skip_reason():
    if os.environ.get("ARMADA_HEAVY") != "1":
        return ("heavy (debootstrap of a Debian image once, then virt-v2v and boots under TCG, ~10 min):"
                " make bench runs it with ARMADA_HEAVY=1")
    for tool in ("virt-v2v-in-place", "qemu-img", "debootstrap"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return f"'{tool}' is not installed (scripts/bootstrap)"
    return None


def shared_pool(bed, h):
    # The pool on the bed's shared storage: armadad writes the volumes
    # itself and virt-v2v converts them in place.
    return {"pool": "shared1", "pool_path": os.path.join(bed.shared_dir, "pool-h1")}


class DebianCase(ArmadaBedCase):
    """A bed of one host whose pool is on the shared storage, and the
    helpers both tests use."""

    @classmethod
    def image(cls):
        had = os.path.exists(image_path())
        t0 = time.monotonic()
        try:
            raw = build_image()
        except ImageUnavailable as e:
            raise unittest.SkipTest(f"the Debian image cannot be built: {e}")
        timing("image_build" if not had else "image_cached", time.monotonic() - t0)
        return raw

    def remove_vm(self, name, kill_timeout=120, delete_timeout=300):
        super().remove_vm(name, kill_timeout, delete_timeout)

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

    def assert_boots_converted(self, name, what):
        text, secs = self.boot(name, lambda t: MARKER in t or NO_ROOT.search(t), 1200)
        timing(f"{what}_boot_to_marker", secs)
        self.assertNotRegex(text, NO_ROOT)
        m = re.search(re.escape(MARKER) + r" root=(\S+)", text)
        self.assertIsNotNone(m, text[-2000:])
        self.assertEqual(m.group(1), "/dev/vda1", text[-2000:])


class TestV2vDebianKvm(DebianCase):
    TMP_PREFIX = "armada-v2v-sys-"

    @classmethod
    def skip_reason(cls):
        return heavy_skip_reason()

    @classmethod
    def prepare(cls):
        raw = cls.image()
        cls.share = os.path.join(cls.tmp, "share")
        os.makedirs(cls.share)
        cls.vmdk = os.path.join(cls.share, "foreign.vmdk")
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", raw, cls.vmdk], check=True, timeout=600)

    @classmethod
    def bed_args(cls):
        return {"n_hosts": 1, "cluster": False, "host_args": shared_pool}

    @classmethod
    def bed_ready(cls):
        cls.add_share(cls.share)

    def import_vm(self, name, v2v, timeout):
        self.addCleanup(self.remove_vm, name)
        r = self.d.ok("POST", "/api/v1/vms/import", {"path": self.vmdk, "name": name, "host": "h1", "cpus": 1,
                                                      "memory_mib": MEMORY_MIB, "v2v": v2v})
        t0 = time.monotonic()
        job = self.d.wait_job(r["job"]["id"], timeout=timeout)
        self.assertEqual(job["state"], "succeeded", job)
        return job, time.monotonic() - t0

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
        self.assert_boots_converted("converted", "converted")
        self.remove_vm("converted")


class TestV2vDebianP2vKvm(DebianCase):
    TMP_PREFIX = "armada-v2v-p2v-sys-"
    srv = None
    loop = None

    @classmethod
    def skip_reason(cls):
        return heavy_skip_reason() or ssh_skip()

    @classmethod
    def prepare(cls):
        raw = cls.image()
        # The server's disk: a loop device over a copy of the image.
        cls.disk = os.path.join(cls.tmp, "server-disk.raw")
        subprocess.run(["cp", "--sparse=always", raw, cls.disk], check=True, timeout=600)
        cls.loop = subprocess.run(["losetup", "-f", "--show", cls.disk], check=True, capture_output=True, text=True,
                                  timeout=60).stdout.strip()
        cls.sum_before = sha256_file(cls.disk)
        cls.srv = SshServer(cls.tmp, netns=True).__enter__()

    @classmethod
    def bed_args(cls):
        return {"n_hosts": 1, "cluster": False, "host_args": shared_pool, "extra_args": ["--p2v-ssh-key", cls.srv.client_key]}

    @classmethod
    def release(cls):
        release_server(cls)

    def test_1_p2v_converts_and_boots_on_virtio(self):
        self.addCleanup(self.remove_vm, "phys-debian")
        r = self.d.ok("POST", "/api/v1/p2v", {"server": "phys-debian", "ssh": f"root@{self.srv.addr}", "disks": [self.loop],
                                              "host_key_fingerprint": self.srv.fingerprint, "host": "h1", "cpus": 1,
                                              "memory_mib": MEMORY_MIB, "v2v": "auto"}, expect=(202,))   # P2V is foreign
        t0 = time.monotonic()
        job = self.d.wait_job(r["job"]["id"], timeout=3600)
        timing("p2v_job", time.monotonic() - t0)
        self.assertEqual(job["state"], "succeeded", job)
        res = job["result"]
        timing("p2v_virt_v2v", res["v2v"].get("seconds", 0))
        self.assertEqual((res["v2v"]["ran"], res["v2v"]["converted"]), (True, True), res["v2v"])
        self.assertEqual(res["disk_bus"], "virtio")
        xml = self.ab.bed.virsh("h1", "dumpxml", "phys-debian")
        self.assertIn("bus='virtio'", xml)
        self.assertNotIn("bus='sata'", xml)
        self.assertEqual([d["target"] for d in self.d.find("vms", "phys-debian")["disks"]], ["vda"])
        self.assert_boots_converted("phys-debian", "p2v")
        self.remove_vm("phys-debian")
        self.assertEqual(sha256_file(self.disk), self.sum_before)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


if __name__ == "__main__":
    unittest.main()
