"""Snapshots of VMs (issue 11) against a real armadad on libvirt's test
driver, which keeps snapshots as metadata: the API's shapes, the checks
(names, memory against the VM's state, taken and unknown names), revert's
outcome (running from a snapshot with memory, shut off from one without),
the VM's snapshots count, roles (a self-service user snapshots only the VMs
the grant lets it) and that deleting a VM with snapshots works."""
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

from armada_harness import ROOT, Armadad


def qcow2(path, virtual_size):
    hdr = b"QFI\xfb" + struct.pack(">IQIIQ", 3, 0, 0, 16, virtual_size)
    with open(path, "wb") as f:
        f.write(hdr.ljust(4096, b"\0"))


class SnapshotTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-snap-it-")
        cls.d = d = Armadad()
        try:
            d.start()
            d.token = d.login()
            d.ok("POST", "/api/v1/host-groups", {"path": "Lab"})
            host, job = d.add_host("h1", d.test_node_uri("h1"), group="Lab")
            assert job["state"] == "succeeded", job
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers --
    def refused(self, method, path, body, status, field=None, token=None, contains=None):
        st, b = self.d.request(method, path, body, token=token)
        self.assertEqual(st, status, b)
        if field is not None:
            self.assertEqual(b["error"]["field"], field, b)
        if contains:
            self.assertIn(contains, b["error"]["message"])
        return b

    def snap(self, vm_id, body=None, token=None):
        r = self.d.ok("POST", f"/api/v1/vms/{vm_id}/snapshots", body or {}, token=token)
        job = self.d.wait_job(r["job"]["id"], token=token)
        self.assertEqual(job["state"], "succeeded", job)
        return r, job

    def snaps(self, vm_id, token=None):
        return self.d.ok("GET", f"/api/v1/vms/{vm_id}/snapshots", token=token)

    def act(self, method, path, token=None):
        r = self.d.ok(method, path, {} if method == "POST" else None, token=token)
        job = self.d.wait_job(r["job"]["id"], token=token)
        self.assertEqual(job["state"], "succeeded", job)
        return job

    # -- tests --
    def test_01_tree_revert_and_delete(self):
        vm = self.d.create_vm("snap-vm", "h1", disk_bytes=64 << 20)
        vid = vm["id"]
        self.assertEqual(self.d.vm(vid)["snapshots"], 0)
        self.assertEqual(self.snaps(vid)["snapshots"], [])
        # A stopped VM: disks only.
        r, job = self.snap(vid, {"name": "cold", "description": "before <first> boot & \"quotes\""})
        self.assertEqual(r["snapshot"], {"name": "cold", "has_memory": False})
        self.assertEqual(job["kind"], "vm.snapshot-create")
        self.assertEqual(job["result"]["snapshots"], 1)
        self.assertEqual(self.d.vm(vid)["snapshots"], 1)
        self.refused("POST", f"/api/v1/vms/{vid}/snapshots", {"name": "x", "memory": True}, 409, "memory")
        # Running: with memory, by default, and a generated name.
        self.d.vm_action(vid, "start")
        self.refused("POST", f"/api/v1/vms/{vid}/snapshots", {"name": "x", "memory": False}, 409, "memory")
        r, _ = self.snap(vid)
        warm = r["snapshot"]["name"]
        self.assertRegex(warm, r"^snap-\d{8}-\d{6}$")
        self.assertTrue(r["snapshot"]["has_memory"])
        lst = self.snaps(vid)
        by = {s["name"]: s for s in lst["snapshots"]}
        self.assertEqual([s["name"] for s in lst["snapshots"]], ["cold", warm])
        self.assertIsNone(by["cold"]["parent"])
        self.assertEqual(by[warm]["parent"], "cold")
        self.assertEqual(by["cold"]["description"], "before <first> boot & \"quotes\"")
        self.assertFalse(by["cold"]["has_memory"])
        self.assertTrue(by[warm]["has_memory"])
        self.assertEqual(by["cold"]["state"], "shutoff")
        self.assertEqual(lst["current"], warm)
        self.assertIsNone(by["cold"]["size_bytes"])
        self.assertRegex(by["cold"]["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        # Taken name, unknown names.
        self.refused("POST", f"/api/v1/vms/{vid}/snapshots", {"name": "cold"}, 409, "name", contains="'cold'")
        self.refused("POST", f"/api/v1/vms/{vid}/snapshots/nope/revert", {}, 404, "name")
        self.refused("DELETE", f"/api/v1/vms/{vid}/snapshots/nope", None, 404, "name")
        # Revert to the disk-only snapshot: the VM is left shut off.
        job = self.act("POST", f"/api/v1/vms/{vid}/snapshots/cold/revert")
        self.assertEqual(job["kind"], "vm.snapshot-revert")
        self.assertEqual(self.d.vm(vid)["state"], "stopped")
        self.assertEqual(job["result"]["state"], "stopped")
        # Revert to the one with memory: running again.
        self.act("POST", f"/api/v1/vms/{vid}/snapshots/{warm}/revert")
        self.assertEqual(self.d.vm(vid)["state"], "running")
        # Deleting the parent moves the child up.
        job = self.act("DELETE", f"/api/v1/vms/{vid}/snapshots/cold")
        self.assertEqual(job["result"]["snapshots"], 1)
        lst = self.snaps(vid)["snapshots"]
        self.assertEqual([(s["name"], s["parent"]) for s in lst], [(warm, None)])
        self.assertEqual(self.d.vm(vid)["snapshots"], 1)
        # The count is in the VM list (read model) too.
        listed = [v for v in self.d.ok("GET", "/api/v1/vms")["items"] if v["id"] == vid][0]
        self.assertEqual(listed["snapshots"], 1)
        # Audited.
        actions = [a["action"] for a in self.d.ok("GET", "/api/v1/audit?limit=50")["items"]]
        for a in ("vm.snapshot-create", "vm.snapshot-revert", "vm.snapshot-delete"):
            self.assertIn(a, actions)
        # Deleting the VM deletes its snapshots with it.
        job = self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vid}")["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        self.refused("GET", f"/api/v1/vms/{vid}/snapshots", None, 404)

    def test_02_bad_input(self):
        vm = self.d.create_vm("snap-bad", "h1", disk_bytes=64 << 20)
        vid = vm["id"]
        for name in ("", "-lead", ".hidden", "has space", "a/b", "x" * 64, "semi;colon", "ünï"):
            self.refused("POST", f"/api/v1/vms/{vid}/snapshots", {"name": name}, 400, "name")
        self.refused("POST", f"/api/v1/vms/{vid}/snapshots", {"name": 5}, 400, "name")
        self.refused("POST", f"/api/v1/vms/{vid}/snapshots", {"memory": "yes"}, 400, "memory")
        self.refused("POST", f"/api/v1/vms/{vid}/snapshots", {"size": 1}, 400)
        self.refused("POST", f"/api/v1/vms/{vid}/snapshots", {"name": "ok", "description": "d" * 1001}, 400, "description")
        self.refused("POST", f"/api/v1/vms/{vid}/snapshots/bad;name/revert", {}, 400, "name")
        self.refused("POST", "/api/v1/vms/999999/snapshots", {"name": "ok"}, 404)
        self.refused("GET", "/api/v1/vms/999999/snapshots", None, 404)
        self.x_max = self.snap(vid, {"name": "x" * 63})  # the longest name is fine
        self.assertEqual(self.d.vm(vid)["snapshots"], 1)
        # Nothing half-done: refusals queued no job.
        kinds = [j["kind"] for j in self.d.ok("GET", "/api/v1/jobs?limit=100")["items"] if j.get("target_id") == vid]
        self.assertEqual(kinds.count("vm.snapshot-create"), 1, kinds)

    def test_03_raw_disk_is_refused_naming_the_disk(self):
        # A VM whose disk is raw (defined on the host, discovered by Armada).
        raw = os.path.join(self.tmp, "raw.img")
        with open(raw, "wb") as f:
            f.truncate(1 << 20)
        d = self.d
        uri = d.test_node_uri("h2", domains=(
            "<domain type='test'><name>rawvm</name><uuid>7b0e3c0e-8d1f-4c44-9d7e-2c1f2f0a0b01</uuid><memory>65536</memory>"
            "<vcpu>1</vcpu><os><type>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
            f"<source file='{raw}'/><target dev='vda' bus='virtio'/></disk></devices></domain>"))
        host, job = d.add_host("h2", uri, group="Lab")
        self.assertEqual(job["state"], "succeeded", job)
        vm = d.find("vms", "rawvm")
        self.assertIsNotNone(vm)
        b = self.refused("POST", f"/api/v1/vms/{vm['id']}/snapshots", {"name": "s"}, 409, "disks")
        self.assertIn("'vda'", b["error"]["message"])
        self.assertIn("qcow2", b["error"]["message"])

    def test_04_roles(self):
        d = self.d
        share = os.path.join(self.tmp, "share")
        os.makedirs(share, exist_ok=True)
        qcow2(os.path.join(share, "base.qcow2"), 64 << 20)
        r = d.ok("POST", "/api/v1/library/shares", {"path": share})
        self.assertEqual(d.wait_job(r["job"]["id"])["state"], "succeeded")
        t = d.ok("POST", "/api/v1/templates", {"name": "snap-tpl", "image": "base.qcow2", "cpus": 1, "memory_mib": 64})
        users = {}
        for name, role in (("alice", "self-service"), ("bob", "self-service"), ("carol", "self-service"), ("reader", "read-only")):
            d.request("POST", "/api/v1/users", {"name": name, "password": "password-" + name, "role": role})
            users[name] = d.login(name, "password-" + name)
        d.ok("POST", "/api/v1/grants", {"user": "alice", "templates": ["snap-tpl"], "group": "Lab"})
        d.ok("POST", "/api/v1/grants", {"user": "carol", "templates": ["snap-tpl"], "group": "Lab",
                                        "actions": "deploy,start,stop"})
        vms = {}
        for who in ("alice", "carol"):
            r = d.ok("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": f"{who}-vm"}, token=users[who])
            self.assertEqual(d.wait_job(r["jobs"][0]["id"], token=users[who])["state"], "succeeded")
            vms[who] = d.find("vms", f"{who}-vm")["id"]
        admin_vm = d.create_vm("admin-vm", "h1", disk_bytes=64 << 20)["id"]
        # Alice snapshots, lists, reverts and deletes on her own VM.
        alice = users["alice"]
        self.snap(vms["alice"], {"name": "mine"}, token=alice)
        self.assertEqual([s["name"] for s in self.snaps(vms["alice"], token=alice)["snapshots"]], ["mine"])
        self.act("POST", f"/api/v1/vms/{vms['alice']}/snapshots/mine/revert", token=alice)
        self.act("DELETE", f"/api/v1/vms/{vms['alice']}/snapshots/mine", token=alice)
        # Not on someone else's: it does not exist for her.
        self.refused("POST", f"/api/v1/vms/{admin_vm}/snapshots", {"name": "theirs"}, 404, token=alice)
        self.refused("GET", f"/api/v1/vms/{admin_vm}/snapshots", None, 404, token=alice)
        self.refused("GET", f"/api/v1/vms/{vms['alice']}/snapshots", None, 404, token=users["bob"])
        # Carol's grant lacks "snapshot": refused, and audited as denied.
        b = self.refused("POST", f"/api/v1/vms/{vms['carol']}/snapshots", {"name": "c"}, 403, token=users["carol"])
        self.assertIn("carol", b["error"]["message"])
        # Read-only users list but change nothing.
        self.snap(admin_vm, {"name": "adm"})
        self.assertEqual(len(self.snaps(admin_vm, token=users["reader"])["snapshots"]), 1)
        self.refused("POST", f"/api/v1/vms/{admin_vm}/snapshots", {"name": "ro"}, 403, token=users["reader"])
        self.refused("POST", f"/api/v1/vms/{admin_vm}/snapshots/adm/revert", {}, 403, token=users["reader"])
        self.refused("DELETE", f"/api/v1/vms/{admin_vm}/snapshots/adm", None, 403, token=users["reader"])
        denied = [a for a in d.ok("GET", "/api/v1/audit?limit=100")["items"] if a["result"] == "denied" and a["action"] == "snapshot"]
        self.assertGreaterEqual(len(denied), 4, denied)

    def test_05_cli(self):
        d = self.d
        vm = d.create_vm("cli-vm", "h1", disk_bytes=64 << 20)
        armada = os.path.join(os.environ.get("ARMADA_BUILD", os.path.join(ROOT, "build")), "src", "cli", "armada")
        env = dict(os.environ, ARMADA_URL=d.url, ARMADA_TOKEN=d.token)

        def run(*args, ok=True):
            p = subprocess.run([armada, *args], env=env, capture_output=True, text=True, timeout=60)
            if ok:
                self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
            return p

        p = run("vm", "snapshot", "create", "cli-vm", "first", "--description", "from the CLI", "--wait")
        self.assertIn("succeeded", p.stdout)
        p = run("vm", "snapshot", "list", "cli-vm")
        self.assertIn("first", p.stdout)
        self.assertIn("from the CLI", p.stdout)
        p = run("vm", "snapshot", "create", "cli-vm", "first", ok=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("already", p.stderr)
        run("vm", "snapshot", "revert", "cli-vm", "first", "--wait")
        run("vm", "snapshot", "delete", "cli-vm", "first", "--wait")
        self.assertEqual(d.vm(vm["id"])["snapshots"], 0)
        p = run("vm", "snapshot", "list", "cli-vm", "-o", "json")
        self.assertIn('"snapshots": []', p.stdout.replace('"snapshots":[]', '"snapshots": []'))

    def test_06_migration_with_storage_is_refused(self):
        # Snapshots move with a migration on shared storage (system test);
        # a storage copy would leave them behind inside the source's images.
        d = self.d
        vm = d.create_vm("snap-mig-it", "h1", disk_bytes=64 << 20)
        d.vm_action(vm["id"], "start")
        self.snap(vm["id"], {"name": "s1"})
        b = self.refused("POST", f"/api/v1/vms/{vm['id']}/migrate", {"with_storage": True}, 409, "with_storage",
                         contains="1 snapshot inside its disk images")
        self.assertIn("'snap-mig-it'", b["error"]["message"])
        self.assertEqual([j for j in d.ok("GET", "/api/v1/jobs?limit=50")["items"] if j["kind"] == "vm.migrate"
                          and j["target_id"] == vm["id"]], [], "nothing queued")
        self.act("DELETE", f"/api/v1/vms/{vm['id']}/snapshots/s1")
        st, b = d.request("POST", f"/api/v1/vms/{vm['id']}/migrate", {"with_storage": True})
        self.assertNotEqual(b.get("error", {}).get("field"), "with_storage", b)
        if st == 202:
            d.wait_job(b["job"]["id"])


if __name__ == "__main__":
    unittest.main()
