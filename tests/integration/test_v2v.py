"""virt-v2v on import (issue 12), wired to the real virt-v2v-in-place: an
import's disks go through it after qemu-img and before the upload. The
disk is the tiny guest's bootable image (MBR, extlinux, the Debian cloud
kernel and a busybox initramfs: tests/system/test_p2v_kvm.py), which
libguestfs's inspection does not take for an operating system (no /etc,
no package database). So:
  auto    on the image as a VMDK (foreign): virt-v2v runs, says it found no
          OS it can inspect, and the import still succeeds on the disk's
          own bus: result.v2v = {ran: true, converted: false, reason};
          on the raw image (taken for a KVM guest): virt-v2v does not run,
          and the reason says why and that always forces it
  always  on the raw image: virt-v2v runs; the job fails and leaves
          nothing: no VM row, no volume
  never   virt-v2v does not run
  KVM     (a stand-in virt-v2v-in-place whose appliance "fails" unless
          under TCG) armadad runs it once more under TCG; an appliance
          that starts under neither fails an always job clearly
  bad     v2v other than auto|always|never: 400 naming "v2v" (import and
          P2V); armadad refuses a bad --v2v
libguestfs's appliance runs under TCG here (no /dev/kvm): a run takes a
minute or more, so the two runs are the only slow part."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "guest"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "system"))

from armada_harness import ARMADAD, Armadad  # noqa: E402

V2V_TIMEOUT = 900


def boot_disk(tmp, image):
    from guest import GuestUnavailable
    from test_p2v_kvm import build_boot_disk
    try:
        build_boot_disk(tmp, image, "v2v")
    except GuestUnavailable as e:
        raise unittest.SkipTest(f"the tiny guest cannot be built here: {e}")


class TestV2vImport(unittest.TestCase):
    d = None

    @classmethod
    def setUpClass(cls):
        for tool in ("virt-v2v-in-place", "nbdkit", "qemu-img"):
            if not shutil.which(tool):
                raise AssertionError(f"{tool} is not installed (scripts/bootstrap installs virt-v2v, nbdkit and qemu-utils)")
        for tool in ("extlinux", "sfdisk", "mkfs.ext2", "losetup", "mount"):
            if not shutil.which(tool):
                raise unittest.SkipTest(f"{tool} is missing: the tiny guest's boot disk cannot be built")
        cls.tmp = tempfile.mkdtemp(prefix="armada-v2v-it-")
        try:
            cls.root = os.path.join(cls.tmp, "exports")
            os.makedirs(cls.root)
            cls.image = os.path.join(cls.root, "tiny.raw")
            boot_disk(cls.tmp, cls.image)
            cls.vmdk = os.path.join(cls.root, "tiny.vmdk")
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", cls.image, cls.vmdk], check=True,
                           timeout=120)
            # A P2V identity only so that P2V requests get as far as their
            # fields (no server is ever reached here).
            cls.key = os.path.join(cls.tmp, "p2v-key")
            with open(cls.key, "w") as f:
                f.write("not a key\n")
            cls.d = Armadad(args=["--export-root", cls.root, "--v2v", "auto", "--p2v-ssh-key", cls.key]).start()
            cls.d.token = cls.d.login()
            _, job = cls.d.add_host("t1", cls.d.test_node_uri("t1"))
            assert job["state"] == "succeeded", job
            cls.hid = cls.d.find("hosts", "t1")["id"]
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.d:
                cls.d.cleanup()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def volumes(self):
        return sorted(v["name"] for v in self.d.ok("GET", f"/api/v1/hosts/{self.hid}/pools/armada/volumes")["items"])

    def delete(self, name):
        vm = self.d.find("vms", name)
        job = self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)

    def import_job(self, **kw):
        body = dict({"path": self.image, "host": "t1", "memory_mib": 128}, **kw)
        b = self.d.ok("POST", "/api/v1/vms/import", body)
        return b, self.d.wait_job(b["job"]["id"], timeout=V2V_TIMEOUT)

    def test_1_auto_runs_virt_v2v_and_keeps_the_bus_when_it_cannot_convert(self):
        before = self.volumes()
        b, job = self.import_job(name="tiny-auto", path=self.vmdk)   # no "v2v": armadad's --v2v auto
        self.assertEqual(job["state"], "succeeded", job)
        v2v = job["result"]["v2v"]
        self.assertTrue(v2v["ran"], v2v)
        self.assertFalse(v2v["converted"], v2v)
        self.assertIn("found no operating system it can inspect", v2v["reason"])
        self.assertIn("keep the source's bus", v2v["reason"])
        # KVM when /dev/kvm opens and QEMU runs the appliance on it; TCG
        # otherwise (a /dev/kvm that opens but aborts QEMU, nested: armadad
        # runs it again under TCG and says so in its log).
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            self.assertEqual(v2v["backend"], "tcg")
        elif v2v["backend"] == "tcg":
            self.assertIn("did not start under KVM; running virt-v2v again under TCG", self.d.log_text())
        else:
            self.assertEqual(v2v["backend"], "kvm")
        self.assertGreater(v2v["seconds"], 0)
        vm = self.d.find("vms", "tiny-auto")
        self.assertEqual([d["target"] for d in vm["disks"]], ["vda"])
        self.assertEqual(len(self.volumes()), len(before) + 1)
        # virt-v2v's own output went to armadad's log (tagged with the
        # job), not into the job's result or error.
        log = self.d.log_text()
        self.assertIn(f"job {job['id']} (vm.import): virt-v2v:", log)
        self.assertIn("inspection could not detect", log)
        self.assertNotIn("inspection could not detect", str(job["result"]))
        self.delete("tiny-auto")

    def test_1b_auto_skips_a_raw_image(self):
        b, job = self.import_job(name="tiny-native")   # raw: taken for a KVM guest
        self.assertEqual(job["state"], "succeeded", job)
        v2v = job["result"]["v2v"]
        self.assertEqual((v2v["ran"], v2v["converted"]), (False, False), v2v)
        self.assertEqual(v2v["reason"], "The source is a raw disk image, taken for a KVM guest already on virtio: v2v auto"
                         " converts only foreign guests (P2V, OVA, OVF, VMX, VMDK, VHD, VHDX; v2v: always forces it);"
                         " the disks keep the source's bus.")
        self.assertNotIn("seconds", v2v)
        self.assertNotIn(f"job {job['id']} (vm.import): virt-v2v:", self.d.log_text())
        vm = self.d.find("vms", "tiny-native")
        self.assertEqual([d["target"] for d in vm["disks"]], ["vda"])
        self.delete("tiny-native")

    def test_2_always_fails_cleanly(self):
        before = self.volumes()
        b, job = self.import_job(name="tiny-always", v2v="always")
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("Cannot convert the guest with virt-v2v (v2v: always)", job["error"])
        self.assertIn("found no operating system it can inspect", job["error"])
        self.assertIsNone(self.d.find("vms", "tiny-always"))
        self.assertEqual(self.volumes(), before)
        leftovers = [f for f in os.listdir(tempfile.gettempdir()) if f.startswith("armada-import-") or f.startswith("armada-v2v-")]
        self.assertEqual([f for f in leftovers if b["vm"]["uuid"][:8] in f], [])

    def test_3_never_does_not_run_it(self):
        b, job = self.import_job(name="tiny-never", v2v="never")
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(job["result"]["v2v"], {"ran": False, "converted": False,
                                                "reason": "Not asked for (v2v: never); the disks keep the source's bus."})
        self.delete("tiny-never")

    def test_4_bad_values(self):
        for bad in ("sometimes", "AUTO", "", 1, True):
            with self.subTest(v2v=bad):
                st, b = self.d.request("POST", "/api/v1/vms/import", {"path": self.image, "host": "t1", "name": "bad-v2v",
                                                                      "v2v": bad})
                self.assertEqual(st, 400, b)
                self.assertEqual(b["error"]["field"], "v2v", b)
            with self.subTest(p2v=bad):
                st, b = self.d.request("POST", "/api/v1/p2v", {"server": "bad-v2v", "ssh": "root@127.0.0.1", "v2v": bad,
                                                               "host_key_fingerprint": "SHA256:" + "A" * 43})
                self.assertEqual(st, 400, b)
                self.assertEqual(b["error"]["field"], "v2v", b)
        self.assertIsNone(self.d.find("vms", "bad-v2v"))

    def test_5_armadad_refuses_a_bad_default(self):
        tmp = tempfile.mkdtemp(prefix="armada-v2v-flag-")
        try:
            r = subprocess.run([ARMADAD, "--state-dir", tmp, "--listen", "127.0.0.1:1", "--v2v", "sometimes"],
                               capture_output=True, text=True, timeout=30)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("'v2v' must be auto, always or never, not 'sometimes'", r.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# A stand-in for virt-v2v-in-place (first in armadad's PATH): records the
# libguestfs settings of each run, fails as virt-v2v does when libguestfs's
# appliance cannot start unless it runs under TCG (or always, when a file
# "fail" lies beside it), and succeeds under TCG.
FAKE_V2V = """#!/bin/sh
echo "run:${LIBGUESTFS_BACKEND}:${LIBGUESTFS_BACKEND_SETTINGS}" >> "$ARMADA_FAKE_V2V_CALLS"
if [ "$LIBGUESTFS_BACKEND_SETTINGS" = force_tcg ] && [ ! -e "$(dirname "$0")/fail" ]; then
    echo "[  12.0] Finishing off"
    exit 0
fi
echo "libguestfs: error: /usr/bin/qemu-system-x86_64 killed by signal 6 (Aborted), see debug messages above"
echo "virt-v2v-in-place: error: libguestfs error: guestfs_launch failed."
exit 1
"""


class TestV2vKvmFallback(unittest.TestCase):
    """When /dev/kvm opens but QEMU cannot run the appliance on it (nested
    KVM, this CI machine), armadad runs virt-v2v once more under TCG; an
    appliance that starts under neither is a clear failure."""
    d = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-v2v-fb-")
        try:
            cls.root = os.path.join(cls.tmp, "exports")
            os.makedirs(cls.root)
            cls.image = os.path.join(cls.root, "blank.raw")
            with open(cls.image, "wb") as f:
                f.truncate(16 << 20)
            bindir = os.path.join(cls.tmp, "bin")
            os.makedirs(bindir)
            fake = os.path.join(bindir, "virt-v2v-in-place")
            with open(fake, "w") as f:
                f.write(FAKE_V2V)
            os.chmod(fake, 0o755)
            cls.calls = os.path.join(cls.tmp, "calls")
            saved = dict(os.environ)
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
            os.environ["ARMADA_FAKE_V2V_CALLS"] = cls.calls
            try:
                cls.d = Armadad(args=["--export-root", cls.root, "--v2v", "auto"]).start()
            finally:
                os.environ.clear()
                os.environ.update(saved)
            cls.d.token = cls.d.login()
            _, job = cls.d.add_host("t1", cls.d.test_node_uri("t1"))
            assert job["state"] == "succeeded", job
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.d:
                cls.d.cleanup()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def runs(self):
        with open(self.calls) as f:
            return f.read().split()

    def test_1_appliance_fails_under_kvm_then_tcg_converts(self):
        if os.path.exists(self.calls):
            os.unlink(self.calls)
        b = self.d.ok("POST", "/api/v1/vms/import", {"path": self.image, "host": "t1", "name": "fb1", "v2v": "always",
                                                      "memory_mib": 64})
        job = self.d.wait_job(b["job"]["id"], timeout=120)
        self.assertEqual(job["state"], "succeeded", job)
        v2v = job["result"]["v2v"]
        self.assertEqual((v2v["ran"], v2v["converted"], v2v["backend"]), (True, True, "tcg"), v2v)
        if os.access("/dev/kvm", os.R_OK | os.W_OK):
            self.assertEqual(self.runs(), ["run:direct:", "run:direct:force_tcg"])
            self.assertIn(f"job {job['id']} (vm.import): libguestfs's appliance did not start under KVM; running virt-v2v"
                          " again under TCG", self.d.log_text())
        else:
            self.assertEqual(self.runs(), ["run:direct:force_tcg"])   # TCG from the start: one run

    def test_2_appliance_that_never_starts_fails_clearly(self):
        if os.path.exists(self.calls):
            os.unlink(self.calls)
        flag = os.path.join(self.tmp, "bin", "fail")
        with open(flag, "w"):
            pass
        self.addCleanup(os.unlink, flag)
        b = self.d.ok("POST", "/api/v1/vms/import", {"path": self.image, "host": "t1", "name": "fb2", "v2v": "always",
                                                      "memory_mib": 64})
        job = self.d.wait_job(b["job"]["id"], timeout=120)
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("Cannot convert the guest with virt-v2v (v2v: always): virt-v2v could not start libguestfs's"
                      f" appliance (its output is in armadad's log, job {job['id']})", job["error"])
        self.assertIsNone(self.d.find("vms", "fb2"))
        self.assertEqual(len(self.runs()), 2 if os.access("/dev/kvm", os.R_OK | os.W_OK) else 1)


if __name__ == "__main__":
    unittest.main()
