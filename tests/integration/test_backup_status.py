"""What the console and scripts read of a VM's protection (issue 11): the
`last_backup` of GET /vms/{id} (the newest good point: one that the last
verify did not find unrestorable) and the backup families of /metrics
(armada_vm_last_backup_timestamp_seconds per VM that has a point,
armada_vms_without_recent_backup). Points are made by tests/unit/mkpoint in
a directory adopted as a datastore, as in test_backup.py."""
import calendar
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from armada_harness import BUILD, Armadad, raw_get

MKPOINT = os.path.join(BUILD, "tests", "unit", "mkpoint")
MIB = 1 << 20
OLD, NEW = "20200101T000000Z", "20200102T000000Z"


def point_time(pid):
    return calendar.timegm(time.strptime(pid, "%Y%m%dT%H%M%SZ"))


class TestBackupStatus(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-bstatus-it-")
        cls.root = os.path.join(cls.tmp, "root")
        os.makedirs(cls.root)
        cls.d = d = Armadad(["--backup-root", cls.root])
        try:
            d.start()
            d.token = d.login()
            xml = os.path.join(cls.tmp, "t1.xml")
            with open(xml, "w") as f:
                f.write("<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>"
                        "<threads>1</threads><active>8</active></cpu><memory>16777216</memory></node>\n")
            _, job = d.add_host("t1", "test://" + xml)
            assert job["state"] == "succeeded", job
            cls.vm = d.create_vm("bvm1", "t1", memory_mib=64)
            cls.bare = d.create_vm("bvm2", "t1", memory_mib=64)
            d.ok("POST", "/api/v1/users", {"name": "ss", "password": "ss-password-1", "role": "self-service"})
            cls.ss = d.login("ss", "ss-password-1")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def mkpoint(self, directory, pid, fill):
        img = os.path.join(self.tmp, f"img-{pid}.raw")
        with open(img, "wb") as f:
            f.write(bytes([fill]) * (4 * MIB))
        r = subprocess.run([MKPOINT, directory, self.vm["uuid"], pid, "vda=" + img, "--name", self.vm["name"]],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [line for line in r.stdout.split() if line != "zero"]

    def job(self, r):
        j = self.d.wait_job(r["job"]["id"])
        self.assertEqual(j["state"], "succeeded", j)
        return j

    def metrics(self):
        st, _, body = raw_get(self.d, "/metrics", self.d.token)
        self.assertEqual(st, 200)
        return body.decode()

    def test_last_backup_follows_points_and_verify(self):
        d, vid = self.d, self.vm["id"]
        # No point yet: null, and no per-VM line; both VMs count as unprotected.
        self.assertIsNone(d.ok("GET", f"/api/v1/vms/{vid}")["last_backup"])
        text = self.metrics()
        self.assertNotIn("armada_vm_last_backup_timestamp_seconds{", text)
        self.assertRegex(text, r"(?m)^armada_vms_without_recent_backup 2$")

        path = os.path.join(self.root, "st1")
        self.mkpoint(path, OLD, 0x11)
        newest = self.mkpoint(path, NEW, 0x22)
        r = d.ok("POST", "/api/v1/datastores", {"name": "st1", "path": path})
        self.job(r)
        ds = r["datastore"]
        try:
            lb = d.ok("GET", f"/api/v1/vms/{vid}")["last_backup"]
            self.assertEqual((lb["datastore"], lb["point_id"], lb["full"], lb["consistency"]), ("st1", NEW, True, "crash"),
                             lb)
            self.assertTrue(lb["taken_at"].startswith("2020-01-02T00:00:00"), lb)
            self.assertIsNone(lb["last_verified"])
            self.assertIsNone(d.ok("GET", f"/api/v1/vms/{self.bare['id']}")["last_backup"])
            row = d.ok("GET", f"/api/v1/datastores/{ds['id']}")
            self.assertEqual((row["verified_at"], row["verify_bad_points"]), (None, 0), row)
            # A self-service user does not see the VM at all (404, not its point).
            st, _ = d.request("GET", f"/api/v1/vms/{vid}", token=self.ss)
            self.assertEqual(st, 404)

            # /metrics: the point's own time (from its id), only for VMs that have one.
            text = self.metrics()
            m = re.search(r'(?m)^armada_vm_last_backup_timestamp_seconds\{vm="bvm1",uuid="%s"\} (\d+)$' % self.vm["uuid"],
                          text)
            self.assertTrue(m, text)
            self.assertEqual(int(m.group(1)), point_time(NEW))
            self.assertEqual(text.count("armada_vm_last_backup_timestamp_seconds{"), 1)
            # Both points are from 2020: still no VM has one within 24 hours.
            self.assertRegex(text, r"(?m)^armada_vms_without_recent_backup 2$")

            # A clean verify is shown with the point.
            self.job(d.ok("POST", f"/api/v1/datastores/{ds['id']}/actions/verify"))
            lb = d.ok("GET", f"/api/v1/vms/{vid}")["last_backup"]
            self.assertEqual(lb["point_id"], NEW)
            self.assertTrue(lb["last_verified"]["ok"], lb)

            # The newest point's chunk corrupted: verify finds it; the last
            # good point is the older one, in the API and /metrics.
            digest = newest[0]
            chunk = os.path.join(path, ".chunks", digest[:4], digest)
            with open(chunk, "r+b") as f:
                f.seek(os.path.getsize(chunk) // 2)
                b = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([b[0] ^ 0xFF]))
            j = d.wait_job(d.ok("POST", f"/api/v1/datastores/{ds['id']}/actions/verify")["job"]["id"])
            self.assertFalse(j["result"]["ok"], j)
            lb = d.ok("GET", f"/api/v1/vms/{vid}")["last_backup"]
            self.assertEqual(lb["point_id"], OLD, lb)
            self.assertTrue(lb["last_verified"]["ok"], lb)
            self.assertIn('uuid="%s"} %d' % (self.vm["uuid"], point_time(OLD)), self.metrics())
            # The datastore's row says its last verify found a bad point.
            row = [x for x in d.ok("GET", "/api/v1/datastores")["items"] if x["id"] == ds["id"]][0]
            self.assertEqual(row["verify_bad_points"], 1, row)
            self.assertIsNotNone(row["verified_at"])
        finally:
            d.ok("DELETE", f"/api/v1/datastores/{ds['id']}?force=true")

    def test_recent_point_counts_as_protected(self):
        d = self.d
        path = os.path.join(self.root, "st2")
        pid = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 3600))
        self.mkpoint(path, pid, 0x33)
        r = d.ok("POST", "/api/v1/datastores", {"name": "st2", "path": path})
        self.job(r)
        try:
            text = self.metrics()
            self.assertRegex(text, r"(?m)^armada_vms_without_recent_backup 1$")
            self.assertIn('uuid="%s"} %d' % (self.vm["uuid"], point_time(pid)), text)
            self.assertEqual(d.ok("GET", f"/api/v1/vms/{self.vm['id']}")["last_backup"]["point_id"], pid)
        finally:
            d.ok("DELETE", f"/api/v1/datastores/{r['datastore']['id']}?force=true")
        # A forgotten datastore's points are no VM's last backup any more.
        if not any(x["name"] == "st1" for x in d.ok("GET", "/api/v1/datastores")["items"]):
            self.assertIsNone(d.ok("GET", f"/api/v1/vms/{self.vm['id']}")["last_backup"])
            self.assertNotIn("armada_vm_last_backup_timestamp_seconds{", self.metrics())


if __name__ == "__main__":
    unittest.main()
