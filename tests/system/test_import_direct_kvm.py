"""System test of an import written directly by armadad (issue 12,
bench/results/convert.md) on real QEMU: host h1's storage pool is on the
test bed's shared storage, which armadad reaches at the same path, so an
import converts the disk with qemu-img straight into the volume libvirt
created (no local copy, no upload); host h2's pool is its private
/var/lib/libvirt, so the same image under /run (which the bed's hosts do not
see) is converted here and uploaded.

- a VMDK whose boot sector reads a marker from sector 1 is imported onto h1:
  the job's result says `written: ["direct"]`, the volume is a clean qcow2
  libvirt knows at its new size, and the VM boots and reads the marker;
- the same image onto h2 is written `stream` and holds the same bytes
  (armadad runs with --upload-streams 2: the ranged upload);
- a qcow2 whose L1 table points at an unaligned L2 table fails on h1 with the
  conversion's error and leaves no volume in the pool and no VM behind; the
  source is untouched.

The guest is the 140-byte boot sector of test_export_kvm.py (GUEST_MBR)."""
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_export_kvm import GUEST_MBR, MbrGuestCase  # noqa: E402

MARK = b"AMK1" + b"D1RECT00"


def run(*argv):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{argv}: {r.stderr}"
    return r.stdout


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class TestImportDirectKvm(MbrGuestCase):
    # Under /run: the bed's hosts each have a /run of their own, so no
    # host sees these files (h2 cannot convert them itself).
    TMP_PREFIX = "armada-import-direct-"
    TMP_DIR = "/run"

    @classmethod
    def skip_reason(cls):
        return None if shutil.which("qemu-img") else "'qemu-img' is not installed"

    @classmethod
    def prepare(cls):
        raw = os.path.join(cls.tmp, "mbr.raw")
        with open(raw, "wb") as f:
            f.truncate(16 << 20)
            f.write(GUEST_MBR + MARK)
        cls.vmdk = os.path.join(cls.tmp, "mbr.vmdk")
        run("qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", raw, cls.vmdk)
        cls.raw = raw
        # A qcow2 whose first L1 entry points at an unaligned L2 table:
        # accepted when imported (nothing outside the file), refused by
        # qemu-img when it reads the data.
        cls.bad = os.path.join(cls.tmp, "bad.qcow2")
        run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, cls.bad)
        with open(cls.bad, "r+b") as f:
            l1 = struct.unpack(">Q", f.read(48)[40:48])[0]
            f.seek(l1)
            f.write(struct.pack(">Q", (1 << 63) | 0x10200))

    @classmethod
    def bed_args(cls):
        # --upload-streams 2: the streamed import goes through
        # hv_volume_upload_file's ranges (no holes on the wire), not one stream.
        return {"n_hosts": 2, "cluster": False, "extra_args": ["--upload-streams", "2"],
                "host_args": lambda bed, h: {"pool": "shared1", "pool_path": os.path.join(bed.shared_dir, "pool-h1")}
                if h == "h1" else {}}

    @classmethod
    def bed_ready(cls):
        cls.pool = os.path.join(cls.ab.bed.shared_dir, "pool-h1")
        cls.add_share(cls.tmp)

    def import_vm(self, path, name, host, **kw):
        self.addCleanup(self.delete, name)
        r = self.d.ok("POST", "/api/v1/vms/import", dict({"path": path, "name": name, "host": host, "memory_mib": 64}, **kw))
        return self.d.wait_job(r["job"]["id"], timeout=300)

    def same_bytes(self, path):
        out = os.path.join(self.tmp, "back.raw")
        try:
            run("qemu-img", "convert", "-q", "-U", "-O", "raw", path, out)
            return sha(out) == sha(self.raw)
        finally:
            if os.path.exists(out):
                os.unlink(out)

    def test_1_direct_import_boots(self):
        before = sha(self.vmdk)
        job = self.import_vm(self.vmdk, "direct1", "h1", start=True)
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(job["result"]["written"], ["direct"], job["result"])
        vm = self.d.find("vms", "direct1")
        path = {d["target"]: d["path"] for d in vm["disks"]}["vda"]
        self.assertEqual(os.path.dirname(path), self.pool)
        # The guest boots from it and reads the marker the image holds.
        self.assertEqual(self.guest_state("h1", "direct1"), ("R", MARK))
        self.assertIn('"format": "qcow2"', run("qemu-img", "info", "-U", "--output=json", path))
        # libvirt knows what qemu-img wrote (its pool was refreshed): a
        # qcow2 of the image's 16 MiB, not the 1 MiB raw file it created.
        info = self.ab.bed.virsh("h1", "vol-info", "--bytes", path)
        self.assertEqual(int(re.search(r"Capacity:\s+(\d+)", info).group(1)), 16 << 20, info)
        self.assertEqual(sha(self.vmdk), before)

    def test_2_private_pool_is_streamed(self):
        job = self.import_vm(self.vmdk, "stream1", "h2")
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(job["result"]["written"], ["stream"], job["result"])
        vm = self.d.find("vms", "stream1")
        path = {d["target"]: d["path"] for d in vm["disks"]}["vda"]
        local = os.path.join(self.ab.bed.state_dir, "h2", "lib", path[len("/var/lib/libvirt/"):])
        self.assertTrue(self.same_bytes(local))

    def test_3_failed_direct_conversion_leaves_nothing(self):
        before = sha(self.bad)
        had = set(os.listdir(self.pool))
        job = self.import_vm(self.bad, "direct-bad", "h1")
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("Cannot convert disk", job["error"])
        self.assertTrue(any("straight into volume" in s["name"] for s in job["steps"]), job["steps"])
        self.assertIsNone(self.d.find("vms", "direct-bad"))
        self.assertEqual(set(os.listdir(self.pool)), had)
        vols = self.ab.bed.virsh("h1", "vol-list", "shared1")
        self.assertNotIn("direct-bad", vols)
        self.assertEqual(sha(self.bad), before)


if __name__ == "__main__":
    unittest.main()
