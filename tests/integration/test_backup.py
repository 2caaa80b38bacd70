"""Backups and restore against a real armadad on libvirt's test driver: the
shapes of POST /vms/{id}/backups, GET /backups and POST /backups/restore,
who may do what (read-only, self-service on its own and on another's VM),
and bad input — each a clear 4xx naming the field, with nothing half-done.
The backups themselves run on real QEMU in tests/system/test_backup_kvm.py;
here the recovery points are made by tests/unit/mkpoint (as a backup makes
them) in a directory that is then adopted as a datastore, whose job indexes
them, as the test driver has no backup API."""
import datetime
import os
import shutil
import struct
import subprocess
import tempfile
import unittest
import urllib.parse

from armada_harness import ARMADA, BUILD, Armadad, wait_until

MKPOINT = os.path.join(BUILD, "tests", "unit", "mkpoint")
MIB = 1 << 20


def qcow2(path, virtual_size):
    """A minimal qcow2 header: enough for Armada's image detection."""
    hdr = b"QFI\xfb" + struct.pack(">IQIIQ", 3, 0, 0, 16, virtual_size)
    with open(path, "wb") as f:
        f.write(hdr.ljust(4096, b"\0"))


class TestBackupApi(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-backup-it-")
        cls.root = os.path.join(cls.tmp, "root")
        os.makedirs(cls.root)
        cls.d = d = Armadad(["--backup-root", cls.root])
        try:
            d.start()
            d.token = d.login()
            cls._populate()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def _populate(cls):
        d, tmp = cls.d, cls.tmp
        xml = os.path.join(tmp, "t1.xml")
        with open(xml, "w") as f:
            f.write("<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>"
                    "<threads>1</threads><active>8</active></cpu><memory>16777216</memory></node>\n")
        host, job = d.add_host("t1", "test://" + xml)
        assert job["state"] == "succeeded", job
        cls.vm = d.create_vm("vm1", "t1", memory_mib=64)
        if d.vm(cls.vm["id"])["state"] != "running":
            d.vm_action(cls.vm["id"], "start")
        cls.stopped = d.create_vm("vm-off", "t1", memory_mib=64, start=False)
        for name, role in (("ro", "read-only"), ("ss", "self-service"), ("ss2", "self-service")):
            d.ok("POST", "/api/v1/users", {"name": name, "password": f"{name}-password-1", "role": role})
        cls.ro = d.login("ro", "ro-password-1")
        cls.ss = d.login("ss", "ss-password-1")
        cls.ss2 = d.login("ss2", "ss2-password-1")
        share = os.path.join(tmp, "share")
        os.makedirs(share)
        qcow2(os.path.join(share, "base.qcow2"), 64 << 20)
        r = d.ok("POST", "/api/v1/library/shares", {"path": share})
        assert d.wait_job(r["job"]["id"])["state"] == "succeeded"
        tpl = d.ok("POST", "/api/v1/templates", {"name": "tpl", "image": "base.qcow2", "cpus": 1, "memory_mib": 64})
        d.ok("POST", "/api/v1/grants", {"user": "ss", "templates": ["tpl"], "group": "/", "max_vms": 1})
        r = d.ok("POST", f"/api/v1/templates/{tpl['id']}/deploy", {"name": "ssvm"}, token=cls.ss)
        jobs = r.get("jobs") or [r.get("job")]
        for j in jobs:
            assert d.wait_job(j["id"])["state"] == "succeeded", j
        cls.ssvm = d.find("vms", "ssvm")
        # What two finished backups made, in a datastore directory (manifest,
        # chunks, the VM's definition): a point of vm1 (the administrator's)
        # and one of ssvm (ss's). Adding the directory adopts it, and the
        # datastore's job indexes its points for the lists.
        ds_path = os.path.join(cls.root, "ds1")
        img = os.path.join(tmp, "vda.raw")
        with open(img, "wb") as f:
            f.write(b"\x5a" * MIB + b"\0" * (4 * MIB) + b"\xa5" * MIB)
        for v, pid in ((cls.vm, "20261201T010000Z"), (cls.ssvm, "20261201T020000Z")):
            xml = os.path.join(tmp, f"{v['name']}.xml")
            with open(xml, "w") as f:
                f.write(f"<domain type='test'><name>{v['name']}</name><uuid>{v['uuid']}</uuid><memory>65536</memory>"
                        "<vcpu>1</vcpu><os><type>hvm</type></os><devices><disk type='file' device='disk'>"
                        "<driver name='qemu' type='qcow2'/><source file='/nowhere/vda.qcow2'/><target dev='vda'/></disk>"
                        "<interface type='network'><mac address='52:54:00:12:34:56'/><source network='default'/></interface>"
                        "</devices></domain>")
            r = subprocess.run([MKPOINT, ds_path, v["uuid"], pid, "vda=" + img, "--name", v["name"], "--domain-xml", xml],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
        r = d.ok("POST", "/api/v1/datastores", {"name": "ds1", "path": ds_path})
        cls.ds = r["datastore"]
        assert d.wait_job(r["job"]["id"])["state"] == "succeeded"

    def refused(self, method, path, body, status, field, token=None):
        st, b = self.d.request(method, path, body, token=token)
        self.assertEqual(st, status, b)
        if field is not None:
            self.assertEqual(b["error"]["field"], field, b)
        return b

    def jobs_of(self, kind):
        return [j for j in self.d.ok("GET", "/api/v1/jobs?limit=200")["items"] if j["kind"] == kind]

    # -- backup now ----------------------------------------------------------
    def test_backup_now_bad_input_and_rights(self):
        vm = self.vm["id"]
        n = len(self.jobs_of("vm.backup"))
        self.refused("POST", f"/api/v1/vms/{vm}/backups", {"datastore": "nope"}, 422, "datastore")
        self.refused("POST", f"/api/v1/vms/{vm}/backups", {"datastore": 7}, 400, "datastore")
        self.refused("POST", f"/api/v1/vms/{vm}/backups", {"speed": 1}, 400, "speed")
        self.refused("POST", "/api/v1/vms/99999/backups", {}, 404, None)
        self.refused("POST", f"/api/v1/vms/{vm}/backups", {}, 403, None, token=self.ro)
        # Another user's VM does not exist for a self-service user.
        self.refused("POST", f"/api/v1/vms/{vm}/backups", {}, 404, None, token=self.ss)
        self.assertEqual(len(self.jobs_of("vm.backup")), n, "no job was queued by a refused request")
        audit = self.d.ok("GET", "/api/v1/audit?limit=50")["items"]
        self.assertTrue(any(a["action"] == "back up" and a["result"] == "denied" for a in audit), audit)

    def test_backup_now_on_a_host_without_backups(self):
        # The only datastore is the default; the test driver cannot back up:
        # the job fails saying so, and no point is listed.
        r = self.d.ok("POST", f"/api/v1/vms/{self.vm['id']}/backups", {})
        self.assertEqual(r["job"]["kind"], "vm.backup")
        j = self.d.wait_job(r["job"]["id"])
        self.assertEqual(j["state"], "failed", j)
        self.assertIn("vm1", j["error"])
        pts = self.d.ok("GET", "/api/v1/backups?vm=vm1")["items"]
        self.assertEqual([p["point_id"] for p in pts], ["20261201T010000Z"])
        ev = [e for e in self.d.ok("GET", "/api/v1/events?limit=200")["items"] if e["kind"] == "backup.failed"]
        self.assertTrue(ev and ev[-1]["object_name"] == "vm1", ev)

    # -- stopped VMs (offline) ----------------------------------------------
    def test_backup_of_a_stopped_vm_is_accepted_and_leaves_it_shut_off(self):
        # Was 409 (only running VMs). Now the job starts the stopped VM's
        # QEMU paused; on the test driver the VM has no qcow2 disk, so the
        # job fails after the start: the paused domain is destroyed all the
        # same and the VM is stopped in Armada and on the host.
        vm = self.stopped["id"]
        r = self.d.ok("POST", f"/api/v1/vms/{vm}/backups", {})
        j = self.d.wait_job(r["job"]["id"])
        self.assertEqual(j["state"], "failed", j)
        self.assertIn("no qcow2 disk", j["error"])
        self.assertEqual(self.d.vm(vm)["state"], "stopped")
        # The host says so too: a refresh reconciles the record with the domain.
        host = self.d.find("hosts", "t1")
        r = self.d.ok("POST", f"/api/v1/hosts/{host['id']}/actions/refresh")
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        self.assertEqual(self.d.vm(vm)["state"], "stopped")
        ev = [e for e in self.d.ok("GET", "/api/v1/events?limit=200")["items"]
              if e["object_name"] == "vm-off" and e["kind"] in ("vm.state", "backup.unstart-failed")]
        self.assertEqual(ev, [], "the paused QEMU never showed as a state change")

    def test_backup_of_a_stopped_vm_on_a_host_in_maintenance_or_without_room(self):
        d, tmp = self.d, self.tmp
        xml = os.path.join(tmp, "small.xml")
        with open(xml, "w") as f:
            f.write("<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>2</cores>"
                    "<threads>1</threads><active>2</active></cpu><memory>2097152</memory></node>\n")
        host, job = d.add_host("small", "test://" + xml)
        self.assertEqual(job["state"], "succeeded", job)
        off = d.create_vm("small-off", "small", memory_mib=1536, start=False)
        hog = d.create_vm("small-hog", "small", memory_mib=1024)
        try:
            if d.vm(hog["id"])["state"] != "running":
                d.vm_action(hog["id"], "start")
            n = len(self.jobs_of("vm.backup"))
            b = self.refused("POST", f"/api/v1/vms/{off['id']}/backups", {}, 422, "host")
            self.assertEqual(b["error"]["code"], "no_capacity")
            self.assertIn("small-off", b["error"]["message"])
            self.assertIn("memory", b["error"]["message"])
            d.vm_action(hog["id"], "kill")
            r = d.ok("POST", f"/api/v1/hosts/{host['id']}/maintenance", {"on": True})
            self.assertEqual(d.wait_job(r["job"]["id"])["state"], "succeeded")
            b = self.refused("POST", f"/api/v1/vms/{off['id']}/backups", {}, 409, "host")
            self.assertIn("maintenance", b["error"]["message"])
            self.assertEqual(len(self.jobs_of("vm.backup")), n, "no job was queued by a refused request")
            self.assertEqual(d.vm(off["id"])["state"], "stopped")
        finally:
            r = d.request("POST", f"/api/v1/hosts/{host['id']}/maintenance", {"on": False})[1]
            if r.get("job"):
                d.wait_job(r["job"]["id"])

    # -- list ----------------------------------------------------------------
    def test_list_is_scoped(self):
        d = self.d
        allp = d.ok("GET", "/api/v1/backups")["items"]
        self.assertEqual(sorted(p["vm_name"] for p in allp), ["ssvm", "vm1"])
        self.assertEqual(d.ok("GET", "/api/v1/backups", token=self.ro)["items"], allp)
        mine = d.ok("GET", "/api/v1/backups", token=self.ss)["items"]
        self.assertEqual([p["vm_name"] for p in mine], ["ssvm"])
        self.assertEqual(d.ok("GET", "/api/v1/backups", token=self.ss2)["items"], [])
        self.refused("GET", "/api/v1/backups?vm=vm1", None, 404, "vm", token=self.ss)
        self.refused("GET", "/api/v1/backups?vm=nosuchvm", None, 404, "vm")
        by_uuid = d.ok("GET", f"/api/v1/backups?vm={self.vm['uuid']}&datastore=ds1")["items"]
        self.assertEqual([p["vm_name"] for p in by_uuid], ["vm1"])
        self.assertEqual(d.ok("GET", "/api/v1/backups?datastore=other")["items"], [])

    # -- file-level restore --------------------------------------------------
    # Only the checks before the appliance starts (each a 4xx, no child run):
    # listing and downloading for real is tests/system/test_backup_files_kvm.py.
    def files(self, vm, point, token=None, route="files", **q):
        params = {"vm": vm, "point": point, **q}
        return self.d.request("GET", f"/api/v1/backups/{route}?" + urllib.parse.urlencode(params), token=token)

    def files_refused(self, status, field, vm="vm1", point="20261201T010000Z", token=None, route="files", **q):
        st, b = self.files(vm, point, token=token, route=route, **q)
        self.assertEqual(st, status, b)
        self.assertEqual(b["error"]["field"], field, b)
        return b

    def test_files_bad_input(self):
        for route in ("files", "download"):
            self.files_refused(400, "path", route=route, path="etc/hosts")
            self.files_refused(400, "path", route=route, path="/sda/../../etc/passwd")
            self.files_refused(400, "path", route=route, path="/sda/etc/\0passwd")
            self.files_refused(400, "path", route=route, path="/" + "a" * 5000)
            self.files_refused(400, "disk", route=route, path="/sda/x", disk="VD A")
            self.files_refused(404, "disk", route=route, path="/sda/x", disk="vdz")
            self.files_refused(404, "point", route=route, path="/sda/x", point="20200101T000000Z")
            self.files_refused(404, "vm", route=route, path="/sda/x", vm="nosuch")
            self.files_refused(404, "point", route=route, path="/sda/x", datastore="other")
            st, b = self.d.request("GET", f"/api/v1/backups/{route}?vm=vm1&path=/sda/x")
            self.assertEqual((st, b["error"]["field"]), (400, "point"), b)
        # NUL sent raw (%00): refused, never cut short to "/sda/etc".
        st, b = self.d.request("GET", "/api/v1/backups/files?vm=vm1&point=latest&path=/sda/etc%00/../x")
        self.assertEqual((st, b["error"]["field"]), (400, "path"), b)
        # A download names a file inside a file system.
        self.files_refused(400, "path", route="download")
        self.files_refused(422, "path", route="download", path="/")
        self.files_refused(422, "path", route="download", path="/sda/")

    def test_files_scoping(self):
        # Another user's point: 404 as for a VM that does not exist, before
        # anything about the point is revealed.
        a = self.files_refused(404, "vm", token=self.ss, path="/")
        b = self.files_refused(404, "vm", vm="vm9", token=self.ss, path="/")
        self.assertEqual(a["error"]["message"].replace("vm1", "X"), b["error"]["message"].replace("vm9", "X"))
        self.files_refused(404, "vm", vm=self.vm["uuid"], point="latest", token=self.ss2, route="download", path="/sda/x")
        # A read-only user may list points but not read their files: 403, audited.
        st, b = self.files("vm1", "latest", token=self.ro, path="/")
        self.assertEqual(st, 403, b)
        st, b = self.files("vm1", "latest", token=self.ro, route="download", path="/sda/etc/hostname")
        self.assertEqual(st, 403, b)
        audit = self.d.ok("GET", "/api/v1/audit?limit=50")["items"]
        self.assertTrue(any(a["action"] == "download files of" and a["result"] == "denied" for a in audit), audit)
        # Her own VM's point passes the rights check (then the disk is checked).
        self.files_refused(404, "disk", vm="ssvm", point="latest", token=self.ss, path="/", disk="vdq")
        self.files_refused(422, "path", vm="ssvm", point="latest", token=self.ss, route="download", path="/sda")

    # -- restore -------------------------------------------------------------
    def test_restore_bad_input(self):
        n_vms = len(self.d.ok("GET", "/api/v1/vms?limit=200")["items"])
        n = len(self.jobs_of("vm.restore"))
        R = "/api/v1/backups/restore"
        self.refused("POST", R, {"point": "latest", "as": "x"}, 400, "vm")
        self.refused("POST", R, {"vm": "vm1", "as": "x"}, 400, "point")
        self.refused("POST", R, {"vm": "vm1", "point": "latest"}, 400, "as")
        self.refused("POST", R, {"vm": "vm1", "point": "latest", "as": "x", "in_place": True}, 400, "as")
        self.refused("POST", R, {"vm": "vm1", "point": "latest", "as": "bad name!"}, 400, "as")
        self.refused("POST", R, {"vm": "vm1", "point": "latest", "in_place": True, "host": "t1"}, 400, "host")
        self.refused("POST", R, {"vm": "vm1", "point": "latest", "as": "x", "extra": 1}, 400, "extra")
        self.refused("POST", R, {"vm": "nosuch", "point": "latest", "as": "x"}, 404, "vm")
        self.refused("POST", R, {"vm": "vm1", "point": "20200101T000000Z", "as": "x"}, 404, "point")
        self.refused("POST", R, {"vm": "vm1", "point": "latest", "as": "x", "datastore": "other"}, 404, "point")
        self.refused("POST", R, {"vm": "vm1", "point": "latest", "as": "vm-off"}, 409, "as")
        self.refused("POST", R, {"vm": "vm1", "point": "latest", "as": "x", "host": "nohost"}, 422, "host")
        b = self.refused("POST", R, {"vm": "vm1", "point": "latest", "as": "x", "disk": "vdz"}, 422, "disk")
        self.assertIn("has no disk 'vdz'", b["error"]["message"])
        self.refused("POST", R, {"vm": "vm1", "point": "latest", "as": "x", "disk": "bad disk!"}, 400, "disk")
        b = self.refused("POST", R, {"vm": "vm1", "point": "latest", "in_place": True}, 409, "in_place")
        self.assertIn("is running", b["error"]["message"])
        self.assertEqual(len(self.jobs_of("vm.restore")), n)
        self.assertEqual(len(self.d.ok("GET", "/api/v1/vms?limit=200")["items"]), n_vms, "no VM row was left behind")

    def test_restore_scoping(self):
        R = "/api/v1/backups/restore"
        # Another user's point: 404, exactly as a point that does not exist.
        a = self.refused("POST", R, {"vm": "vm1", "point": "20261201T010000Z", "as": "mine"}, 404, "vm", token=self.ss)
        b = self.refused("POST", R, {"vm": "vm9", "point": "20261201T010000Z", "as": "mine"}, 404, "vm", token=self.ss)
        self.assertEqual(a["error"]["message"].replace("vm1", "X"), b["error"]["message"].replace("vm9", "X"))
        self.refused("POST", R, {"vm": self.vm["uuid"], "point": "latest", "as": "mine"}, 404, "vm", token=self.ss)
        self.refused("POST", R, {"vm": "vm1", "point": "latest", "as": "mine"}, 403, None, token=self.ro)
        # Its own VM's point: within its grant (max 1 VM, which ssvm uses).
        b = self.refused("POST", R, {"vm": "ssvm", "point": "latest", "as": "ss-copy"}, 422, "as", token=self.ss)
        self.assertIn("quota", b["error"]["message"])
        self.assertIsNone(self.d.find("vms", "ss-copy"))

    def test_restore_as_new_vm(self):
        d = self.d
        r = d.ok("POST", "/api/v1/backups/restore", {"vm": "vm1", "point": "latest", "as": "vm1-copy", "host": "t1"})
        self.assertEqual(r["vm"]["name"], "vm1-copy")
        j = d.wait_job(r["job"]["id"])
        self.assertEqual(j["state"], "succeeded", j)
        res = j["result"]
        self.assertEqual((res["vm"], res["host"], res["point_id"], res["in_place"]), ("vm1-copy", "t1", "20261201T010000Z", False))
        self.assertEqual([x["target"] for x in res["disks"]], ["vda"])
        v = d.vm(res["vm_id"])
        self.assertNotEqual(v["uuid"], self.vm["uuid"])
        self.assertEqual(v["state"], "stopped")
        self.assertEqual([x["path"] for x in v["disks"]], [res["disks"][0]["path"]])
        audit = d.ok("GET", "/api/v1/audit?limit=50")["items"]
        self.assertTrue(any(a["action"] == "vm.restore" and a["object_name"] == "vm1-copy" for a in audit), audit)
        self.refused("POST", "/api/v1/backups/restore", {"vm": "vm1", "point": "latest", "as": "vm1-copy"}, 409, "as")
        d.wait_job(d.ok("DELETE", f"/api/v1/vms/{res['vm_id']}")["job"]["id"])

    def test_cli(self):
        env = dict(os.environ)

        def cli(*args, token=None):
            return subprocess.run([ARMADA, "--server", self.d.url, "--token", token or self.d.token, *args],
                                  capture_output=True, text=True, timeout=60, env=env)
        r = cli("backup", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"vm1\s+20261201T010000Z\s+ds1\s+full\s+crash")
        r = cli("backup", "list", "ssvm", token=self.ss)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ssvm", r.stdout)
        self.assertNotIn("vm1 ", r.stdout)
        r = cli("backup", "restore", "vm1/latest", "--in-place")
        self.assertEqual(r.returncode, 1)
        self.assertIn("is running", r.stderr)
        r = cli("backup", "restore", "vm1")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("usage", r.stderr)
        r = cli("backup", "now", "vm1", "--datastore", "ds1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("vm.backup", r.stdout)
        # File-level restore: usage errors, and the server's 4xx said with
        # its field (no appliance starts for these); nothing is written.
        out = os.path.join(self.tmp, "cli-download.out")
        for args in (("backup", "files", "vm1"), ("backup", "download", "vm1/latest", "/sda/x"),
                     ("backup", "download", "vm1", "/sda/x", "--to", out)):
            r = cli(*args)
            self.assertEqual(r.returncode, 1, (args, r.stderr))
            self.assertIn("usage", r.stderr)
        r = cli("backup", "files", "vm1/latest", "etc")
        self.assertEqual(r.returncode, 1)
        self.assertIn("field: path", r.stderr)
        r = cli("backup", "download", "vm1/latest", "/sda/x", "--disk", "vdz", "--to", out)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no disk 'vdz'", r.stderr)
        r = cli("backup", "download", "vm1/latest", "/sda/x", "--to", out, token=self.ro)
        self.assertEqual(r.returncode, 1)
        self.assertEqual([n for n in os.listdir(self.tmp) if n.startswith("cli-download")], [], "no file, not even a temporary one")

    def test_zz_index_follows_the_datastore(self):
        # Runs last (by name). A point written into the datastore behind the
        # index's back is listed after the datastore's next job; a pruned
        # point leaves the list.
        d = self.d
        img = os.path.join(self.tmp, "vda.raw")
        r = subprocess.run([MKPOINT, self.ds["path"], self.vm["uuid"], "20261201T030000Z", "vda=" + img, "--name", "vm1"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([p["point_id"] for p in d.ok("GET", "/api/v1/backups?vm=vm1")["items"]], ["20261201T010000Z"])
        r = d.ok("POST", f"/api/v1/datastores/{self.ds['id']}/actions/prune", {"vm": "vm1", "keep_last": 1})
        self.assertEqual(d.wait_job(r["job"]["id"])["state"], "succeeded")
        self.assertEqual([p["point_id"] for p in d.ok("GET", "/api/v1/backups?vm=vm1")["items"]], ["20261201T030000Z"])
        self.assertEqual([p["vm_name"] for p in d.ok("GET", "/api/v1/backups", token=self.ss)["items"]], ["ssvm"])
        # Removing the datastore (its files stay) takes its points out of the
        # lists; adding the directory again adopts them back.
        d.ok("DELETE", f"/api/v1/datastores/{self.ds['id']}?force=true")
        self.assertEqual(d.ok("GET", "/api/v1/backups")["items"], [])
        r = d.ok("POST", "/api/v1/datastores", {"name": "ds1", "path": self.ds["path"]})
        self.ds = r["datastore"]
        wait_until(lambda: [p["point_id"] for p in d.ok("GET", "/api/v1/backups?vm=vm1")["items"]] == ["20261201T030000Z"], 30,
                   what="the adopted datastore's points listed again")


class TestBackupPolicies(unittest.TestCase):
    """Protection policies: bad input and rights, the scheduler queueing the
    backups that are due (system jobs, not again before the interval), and
    the backup-overdue alert of a VM with no point within twice its
    interval (on the test driver every backup fails, so it opens)."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-policy-it-")
        cls.d = d = Armadad(["--backup-schedule-ms", "250"])
        try:
            d.start()
            d.token = d.login()
            xml = os.path.join(cls.tmp, "t1.xml")
            with open(xml, "w") as f:
                f.write("<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>"
                        "<threads>1</threads><active>8</active></cpu><memory>16777216</memory></node>\n")
            d.ok("POST", "/api/v1/host-groups", {"path": "Lab"})
            _, job = d.add_host("t1", "test://" + xml, group="Lab")
            assert job["state"] == "succeeded", job
            cls.vm = d.create_vm("p1", "t1", memory_mib=64)
            if d.vm(cls.vm["id"])["state"] != "running":
                d.vm_action(cls.vm["id"], "start")
            d.ok("POST", "/api/v1/users", {"name": "ro", "password": "ro-password-1", "role": "read-only"})
            cls.ro = d.login("ro", "ro-password-1")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def refused(self, body, status, field, token=None):
        st, b = self.d.request("POST", "/api/v1/backup-policies", body, token=token)
        self.assertEqual(st, status, b)
        if field is not None:
            self.assertEqual(b["error"]["field"], field, b)

    def test_bad_input_and_rights(self):
        self.refused({"vm": "p1"}, 400, "every")
        self.refused({"vm": "p1", "every": "5s"}, 400, "every")
        self.refused({"vm": "p1", "every": "15x"}, 400, "every")
        self.refused({"vm": "p1", "group": "Lab", "every": "15m"}, 400, "vm")
        self.refused({"every": "15m"}, 400, "vm")
        self.refused({"vm": "p1", "every": "15m", "keep_last": -1}, 422, "keep_last")
        self.refused({"vm": "nosuch", "every": "15m"}, 422, "vm")
        self.refused({"group": "Nowhere", "every": "15m"}, 422, "group")
        self.refused({"vm": "p1", "every": "15m", "datastore": "nods"}, 422, "datastore")
        self.refused({"vm": "p1", "every": "15m"}, 403, None, token=self.ro)
        self.assertEqual(self.d.ok("GET", "/api/v1/backup-policies")["items"], [])
        st, b = self.d.request("DELETE", "/api/v1/backup-policies/999")
        self.assertEqual(st, 404, b)

    def test_schedule_and_overdue_alert(self):
        d = self.d
        p = d.ok("POST", "/api/v1/backup-policies", {"group": "Lab", "every": "10s", "keep_last": 3})
        self.assertEqual((p["group_path"], p["every_s"], p["keep_last"]), ("Lab", 10, 3))
        # A VM's own policy replaces the group's for it; setting it twice replaces it.
        d.ok("POST", "/api/v1/backup-policies", {"vm": "p1", "every": "1h"})
        own = d.ok("POST", "/api/v1/backup-policies", {"vm": "p1", "every": "10s", "keep_daily": 7})
        self.assertEqual(len(d.ok("GET", "/api/v1/backup-policies")["items"]), 2)
        self.assertEqual(d.ok("GET", "/api/v1/backup-policies", token=self.ro)["items"],
                         d.ok("GET", "/api/v1/backup-policies")["items"])

        def backups():
            return [j for j in d.ok("GET", "/api/v1/jobs?limit=200")["items"] if j["kind"] == "vm.backup"]
        first = wait_until(lambda: backups(), 10, interval=0.1, what="the scheduler to queue a backup of p1")
        self.assertIsNone(first[0]["owner_id"], first[0])
        d.wait_job(first[0]["id"])
        alert = wait_until(lambda: [a for a in d.ok("GET", "/api/v1/alerts?state=open")["items"]
                                    if a["rule_name"] == "backup-overdue" and a["object_id"] == self.vm["id"]],
                           40, interval=0.5, what="the backup-overdue alert of p1")
        self.assertIn("no recovery point", alert[0]["message"])
        self.assertTrue([e for e in d.ok("GET", "/api/v1/events?limit=200")["items"] if e["kind"] == "backup.overdue"])
        # Rounds run every 250 ms, yet a failed backup is retried only after
        # its interval (10 s): p1's backups were queued at least that far apart.
        mine = sorted((j for j in wait_until(lambda: [j for j in backups() if j["target_id"] == self.vm["id"]][1:] and backups(),
                                             30, interval=0.5, what="p1's backup retried after its interval")
                       if j["target_id"] == self.vm["id"]), key=lambda j: j["id"])
        self.assertGreaterEqual(len(mine), 2, "retried after its interval")
        queued = [datetime.datetime.fromisoformat(j["created_at"].replace("Z", "+00:00")) for j in mine]
        gaps = [(b - a).total_seconds() for a, b in zip(queued, queued[1:])]
        self.assertTrue(all(g >= 9.5 for g in gaps), f"backups of p1 queued closer than the 10 s interval: {gaps}")
        d.ok("DELETE", f"/api/v1/backup-policies/{own['id']}")
        d.ok("DELETE", f"/api/v1/backup-policies/{p['id']}")
        self.assertEqual(d.ok("GET", "/api/v1/backup-policies")["items"], [])
        # Uncovered now: the scheduler resolves the alert (the monitor's rounds leave it alone).
        wait_until(lambda: not [a for a in d.ok("GET", "/api/v1/alerts?state=open")["items"] if a["rule_name"] == "backup-overdue"],
                   10, interval=0.2, what="the backup-overdue alert to resolve")
        audit = d.ok("GET", "/api/v1/audit?limit=50")["items"]
        self.assertTrue(any(a["action"] == "backup.policy-set" for a in audit))
        self.assertTrue(any(a["action"] == "backup.policy-delete" for a in audit))

    def test_cli(self):
        def cli(*args):
            return subprocess.run([ARMADA, "--server", self.d.url, "--token", self.d.token, *args], capture_output=True,
                                  text=True, timeout=60)
        r = cli("backup", "policy", "set", "Lab", "--every", "1h", "--keep-last", "4", "--keep-daily", "7")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("group 'Lab' every 3600 s", r.stdout)
        r = cli("backup", "policy", "list")
        self.assertRegex(r.stdout, r"group /Lab\s+3600 s\s+\(the only one\)\s+4/0/7/0/0/0")
        pid = r.stdout.split("\n")[1].split()[0]
        r = cli("backup", "policy", "set", "p1", "--every", "2s")
        self.assertEqual(r.returncode, 1)
        self.assertIn("at least 10 seconds", r.stderr)
        r = cli("backup", "policy", "remove", pid)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    unittest.main()
