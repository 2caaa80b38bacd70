"""The staging directory of an export that armadad could not finish (killed
with SIGKILL mid-export) is removed (issue 12): at the next start, when the
job is found abandoned, and by the next export into the same directory; a
staging directory whose job still runs stays, and nothing outside the
export root is touched — not a directory the job named that now lies
outside it (the root moved, or a symbolic link was put in its place), nor a
file a link in the staging directory points to."""
import json
import os
import shutil
import signal
import tempfile
import time
import unittest

import dbdirect
from armada_harness import Armadad, wait_until


class ExportStagingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-export-staging-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.root = os.path.join(cls.tmp, "exports")
        cls.outside = os.path.join(cls.tmp, "outside")
        os.makedirs(cls.root)
        os.makedirs(cls.outside)
        cls.secret = os.path.join(cls.outside, "keep.txt")
        with open(cls.secret, "w") as f:
            f.write("not armadad's to remove\n")
        cls.d = Armadad(args=["--export-root", cls.root])
        cls.addClassCleanup(cls.d.cleanup)          # also when setUpClass fails midway
        cls.d.start()
        cls.d.token = cls.d.login()
        _, job = cls.d.add_host("s1", cls.d.test_node_uri("s1"))
        assert job["state"] == "succeeded", job
        b = cls.d.ok("POST", "/api/v1/vms", {"name": "stg", "host": "s1", "cpus": 1, "memory_mib": 64, "disk_size": "16M",
                                            "start": False})
        assert cls.d.wait_job(b["job"]["id"])["state"] == "succeeded"
        cls.vm = cls.d.find("vms", "stg")

    def db(self):
        """The daemon's store behind its back, on either engine (dbdirect)."""
        return dbdirect.connect(self.d)

    def fake_job(self, state, to):
        """A vm.export job row as a killed export leaves it; its id."""
        now = int(time.time() * 1000)
        params = {"to": to, "format": "ova", "target": os.path.join(to, "stg.ova")}
        with self.db() as db:
            cur = db.execute("INSERT INTO job(kind, state, target_kind, target_id, target_name, owner_id, params, created_at,"
                             " started_at) VALUES ('vm.export', ?, 'vm', ?, 'stg', 1, ?, ?, ?) RETURNING id",
                             (state, self.vm["id"], json.dumps(params), now, now))
            return cur.fetchone()[0]

    def staging(self, where, job, suffix="Ab12Cd"):
        """A staging directory as an export midway leaves it: a converted
        disk, qemu-img's log, a downloaded source and a link to a file
        outside."""
        p = os.path.join(where, f".armada-export-{job}-{suffix}")
        os.makedirs(p)
        for name in ("stg-disk1.vmdk", ".log", ".src-vda"):
            with open(os.path.join(p, name), "wb") as f:
                f.write(b"x" * 4096)
        os.symlink(self.secret, os.path.join(p, "link"))
        return p

    def test_restart_removes_the_staging_of_an_export_killed_midway(self):
        sub = os.path.join(self.root, "sub")
        os.makedirs(sub)
        elsewhere = os.path.join(self.outside, "was-root")     # an export root since moved
        os.makedirs(elsewhere)
        linked = os.path.join(self.root, "linked")               # under the root, now a link outside
        os.makedirs(linked)
        self.assertEqual(self.d.stop(signal.SIGKILL), -9)
        killed = self.fake_job("running", sub)
        moved = self.fake_job("running", elsewhere)
        swapped = self.fake_job("running", linked)
        left = self.staging(sub, killed)
        other = self.staging(sub, 424242)                        # not this job's: left for the next export
        outside_moved = self.staging(elsewhere, moved)
        decoy = os.path.join(self.outside, "decoy")
        os.makedirs(decoy)
        outside_swapped = self.staging(decoy, swapped)
        os.rmdir(linked)
        os.symlink(decoy, linked)
        self.d.start()
        self.d.token = self.d.login()
        wait_until(lambda: not os.path.exists(left), 20, what="the killed export's staging directory to go")
        job = self.d.ok("GET", f"/api/v1/jobs/{killed}")
        self.assertEqual(job["state"], "failed", job)
        self.assertTrue(os.path.isdir(other))
        # nothing outside the root was touched
        for p in (outside_moved, outside_swapped):
            self.assertEqual(sorted(os.listdir(p)), [".log", ".src-vda", "link", "stg-disk1.vmdk"])
        with open(self.secret) as f:
            self.assertEqual(f.read(), "not armadad's to remove\n")
        self.assertEqual(sorted(os.listdir(sub)), [os.path.basename(other)])

    def test_next_export_removes_stale_staging_but_not_a_running_one(self):
        sub = os.path.join(self.root, "next")
        os.makedirs(sub)
        finished = self.fake_job("failed", sub)
        stale = self.staging(sub, finished)
        gone = self.staging(sub, 99999999)                       # no such job
        alive = self.fake_job("running", sub)                    # another export still at work
        self.addCleanup(self.end_job, alive)
        busy = self.staging(sub, alive)
        r = self.d.ok("POST", f"/api/v1/vms/{self.vm['id']}/export", {"to": sub, "format": "ova"})
        job = self.d.wait_job(r["job"]["id"])
        self.assertIn(job["state"], ("succeeded", "failed"), job)   # the test driver keeps no disk bytes: it fails later
        self.assertFalse(os.path.exists(stale))
        self.assertFalse(os.path.exists(gone))
        self.assertTrue(os.path.isdir(busy))
        # the job's own staging directory went too (failed or not)
        self.assertEqual(sorted(n for n in os.listdir(sub) if n.startswith(".armada-export-")), [os.path.basename(busy)])
        with open(self.secret) as f:
            self.assertEqual(f.read(), "not armadad's to remove\n")

    def end_job(self, job_id):
        with self.db() as db:
            db.execute("UPDATE job SET state = 'failed', finished_at = ? WHERE id = ?", (int(time.time() * 1000), job_id))


if __name__ == "__main__":
    unittest.main()
