"""System test of a restore written directly by armadad (armadad
--restore-direct yes, the default) on real QEMU: host h1's storage pool is
on the test bed's shared storage, which armadad reaches at the same path,
so a restore writes the new volume's file itself instead of sending it over
libvirt's stream; host h2's pool is in its private /var/lib/libvirt, so a
restore there takes the stream.

- a point restored to h1 is written `direct`, to h2 `stream`, and both
  volumes hold exactly the guest's data (a clean qcow2); armadad runs with
  --upload-streams 2, so both write two ranges of the image at once (two
  threads; two libvirt streams, each without holes on the wire);
- a restore to h1 that meets a corrupt chunk fails naming it and leaves no
  volume behind, as the stream does.
"""
import datetime
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_bed import ArmadaBed  # noqa: E402
from testbed import skip_reason  # noqa: E402

MIB = 1 << 20
DISK_MIB = 32


class TestRestoreDirectKvm(unittest.TestCase):
    ab = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        from guest import GuestUnavailable, build_disk_guest
        try:
            cls.kernel, cls.initrd = build_disk_guest()
        except GuestUnavailable as e:
            raise unittest.SkipTest(f"no disk guest: {e}")
        cls.root = tempfile.mkdtemp(prefix="armada-restore-direct-")
        try:
            cls.ab = ArmadaBed(2, cluster=False, extra_args=["--backup-root", cls.root, "--upload-streams", "2"],
                               host_args=lambda bed, h: {"pool": "shared1", "pool_path":
                                                         os.path.join(bed.shared_dir, "pool-h1")} if h == "h1" else {}
                               ).__enter__()
            cls.ds = os.path.join(cls.root, "ds1")
            r = cls.ab.d.ok("POST", "/api/v1/datastores", {"name": "ds1", "path": cls.ds, "chunk_size": 4 * MIB})
            assert cls.ab.d.wait_job(r["job"]["id"])["state"] == "succeeded"
        except BaseException:
            if cls.ab:
                cls.ab.__exit__(None, None, None)
            shutil.rmtree(cls.root, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.ab:
            cls.ab.__exit__(None, None, None)
        shutil.rmtree(cls.root, ignore_errors=True)

    def guest(self, name, writes):
        vm, _ = self.ab.start_disk_guest(self, name, self.kernel, self.initrd, writes,
                                         os.path.join(self.ab.bed.shared_dir, "direct"), size_mib=DISK_MIB)
        return vm

    def restore(self, point, as_name, host):
        d = self.ab.d
        r = d.ok("POST", "/api/v1/backups/restore", {"vm": "rd1", "point": point, "as": as_name, "host": host})
        j = d.wait_job(r["job"]["id"], timeout=300)
        if j["state"] == "succeeded":
            self.addCleanup(lambda: d.wait_job(d.ok("DELETE", f"/api/v1/vms/{j['result']['vm_id']}")["job"]["id"],
                                               timeout=120))
        return j

    def disk_sha(self, host, path):
        with tempfile.TemporaryDirectory() as tmp:
            q = os.path.join(tmp, "d.qcow2")
            raw = os.path.join(tmp, "d.raw")
            self.ab.bed.virsh(host, "vol-download", path, q, timeout=120)
            self.assertEqual(subprocess.run(["qemu-img", "check", "-q", q]).returncode, 0)
            subprocess.run(["qemu-img", "convert", "-O", "raw", q, raw], check=True)
            with open(raw, "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()

    def progress_spaced(self, job):
        """A restore's progress steps ('... MiB written') come at most one per
        250 ms, and one at the end: each is a database transaction (per
        chunk they cost more than the chunk)."""
        at = [datetime.datetime.fromisoformat(s["at"].replace("Z", "+00:00")).timestamp()
              for s in job["steps"] if "MiB written" in s["name"]]
        self.assertGreaterEqual(len(at), 1, job["steps"])
        self.assertTrue([s for s in job["steps"] if s["name"].endswith(f": {DISK_MIB}/{DISK_MIB} MiB written")],
                        job["steps"])
        for a, b in zip(at, at[1:-1]):
            self.assertGreaterEqual(b - a, 0.24, job["steps"])

    def test_direct_and_stream_restores_are_exact(self):
        ab, d = self.ab, self.ab.d
        vm = self.guest("rd1", [(0x51, 0, 4), (0x52, 12, 4)])
        r = d.ok("POST", f"/api/v1/vms/{vm['id']}/backups", {"datastore": "ds1"})
        j = d.wait_job(r["job"]["id"], timeout=300)
        self.assertEqual(j["state"], "succeeded", j)
        point = j["result"]["point_id"]
        want = bytearray(DISK_MIB * MIB)
        want[0:4 * MIB] = b"\x51" * (4 * MIB)
        want[12 * MIB:16 * MIB] = b"\x52" * (4 * MIB)
        want = hashlib.sha256(bytes(want)).hexdigest()

        j1 = self.restore(point, "rd1-a", "h1")
        self.assertEqual(j1["state"], "succeeded", j1)
        disk = j1["result"]["disks"][0]
        self.assertEqual(disk["written"], "direct", j1["result"])
        self.assertEqual(disk["streams"], 0, j1["result"])
        self.assertTrue(disk["path"].startswith(os.path.join(ab.bed.shared_dir, "pool-h1") + "/"), disk)
        self.assertEqual(self.disk_sha("h1", disk["path"]), want)
        self.progress_spaced(j1)

        j2 = self.restore(point, "rd1-b", "h2")
        self.assertEqual(j2["state"], "succeeded", j2)
        self.assertEqual(j2["result"]["disks"][0]["written"], "stream", j2["result"])
        self.assertEqual(j2["result"]["disks"][0]["streams"], 2, j2["result"])
        self.assertEqual(self.disk_sha("h2", j2["result"]["disks"][0]["path"]), want)

        # A corrupt chunk half-way: the direct restore fails naming it and
        # leaves no volume (nor VM) behind.
        with open(os.path.join(self.ds, "vm", vm["uuid"], point, "manifest.json")) as f:
            import json
            m = json.load(f)
        idx = os.path.join(self.ds, "vm", vm["uuid"], point, m["disks"][0]["index"])
        with open(idx, "rb") as f:
            raw = f.read()
        digest = raw[24 + 3 * 32:24 + 4 * 32].hex()   # chunk 3: 12-16 MiB, the 0x52s
        chunk = os.path.join(self.ds, ".chunks", digest[:4], digest)
        saved = os.path.join(self.root, "saved-chunk")
        shutil.copy(chunk, saved)
        try:
            with open(chunk, "r+b") as f:
                f.seek(40)
                f.write(b"XXXXXXXX")
            j3 = self.restore(point, "rd1-c", "h1")
            self.assertEqual(j3["state"], "failed", j3)
            self.assertIn(f"chunk 3 ({digest[:12]}", j3["error"])
            left = os.listdir(os.path.join(ab.bed.shared_dir, "pool-h1"))
            self.assertEqual([f for f in left if f.startswith("rd1-c-")], [], left)
            self.assertEqual(d.ok("GET", "/api/v1/vms?name=rd1-c")["items"], [])
        finally:
            shutil.copy(saved, chunk)


if __name__ == "__main__":
    unittest.main()
