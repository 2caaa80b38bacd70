"""Library, templates, deployment and self-service grants against a real
armadad with libvirt test-driver hosts (test:///<node>.xml, each its own fake
hypervisor with room for VMs): shares and indexing, import by path and by
streamed upload, templates and their bad input, deploys, quotas, and that a
self-service user never reaches another user's VMs."""
import hashlib
import json
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

from armada_harness import ARMADA, Armadad

NODE_XML = """<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>
       <cores>16</cores><threads>1</threads><active>16</active></cpu>
  <memory>{kib}</memory>
</node>
"""


def qcow2(path, virtual_size):
    """A minimal qcow2 header (version 3): enough for Armada's detection; the
    test driver never reads more."""
    hdr = b"QFI\xfb" + struct.pack(">IQIIQ", 3, 0, 0, 16, virtual_size)
    with open(path, "wb") as f:
        f.write(hdr.ljust(4096, b"\0"))


def iso(path):
    with open(path, "wb") as f:
        f.write(b"\0" * 0x8001 + b"CD001" + b"\0" * 0x1000)


class LibraryTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-lib-it-")
        cls.share = os.path.join(cls.tmp, "share")
        cls.outside = os.path.join(cls.tmp, "outside")
        os.makedirs(os.path.join(cls.share, "linux"))
        os.makedirs(cls.outside)
        qcow2(os.path.join(cls.share, "linux", "debian.qcow2"), 1 << 30)
        qcow2(os.path.join(cls.share, "linux", "alpine.img"), 256 << 20)   # content wins over the name
        iso(os.path.join(cls.share, "tools.iso"))
        with open(os.path.join(cls.share, "setup.sh"), "w") as f:
            f.write("#!/bin/sh\necho hi\n")
        with open(os.path.join(cls.share, "notes.bin"), "wb") as f:
            f.write(b"\x00\x01junk")
        qcow2(os.path.join(cls.outside, "secret.qcow2"), 1 << 20)
        os.symlink(os.path.join(cls.outside, "secret.qcow2"), os.path.join(cls.share, "escape.qcow2"))
        os.symlink(cls.outside, os.path.join(cls.share, "escape-dir"))
        cls.d = Armadad().start()
        cls.d.token = cls.d.login()
        for name, group in (("prod1", "Seattle/Production"), ("other1", "Other")):
            xml = os.path.join(cls.tmp, name + ".xml")
            with open(xml, "w") as f:
                f.write(NODE_XML.format(kib=64 << 20))
            cls.d.request("POST", "/api/v1/host-groups", {"path": group})
            h, job = cls.d.add_host(name, "test://" + xml, group=group)
            assert job["state"] == "succeeded", job
        r = cls.d.ok("POST", "/api/v1/library/shares", {"path": cls.share})
        cls.share_id = r["share"]["id"]
        job = cls.d.wait_job(r["job"]["id"])
        assert job["state"] == "succeeded", job
        cls.index_result = job["result"]

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers --
    def items(self):
        return {i["rel_path"]: i for i in self.d.ok("GET", "/api/v1/library/items")["items"]}

    def template(self, name, image="linux/debian.qcow2", **kw):
        body = {"name": name, "image": image, "cpus": 1, "memory_mib": 64}
        body.update(kw)
        return self.d.ok("POST", "/api/v1/templates", body)

    def user(self, name, role="self-service"):
        self.d.request("POST", "/api/v1/users", {"name": name, "password": "password-" + name, "role": role})
        return self.d.login(name, "password-" + name)

    def refused(self, method, path, body, status, field=None, token=None, contains=None):
        st, b = self.d.request(method, path, body, token=token)
        self.assertEqual(st, status, b)
        if field is not None:
            self.assertEqual(b["error"]["field"], field, b)
        if contains:
            self.assertIn(contains, b["error"]["message"])
        return b

    # -- shares and indexing --
    def test_01_indexing_detects_by_content_and_skips_symlinks(self):
        it = self.items()
        self.assertEqual(sorted(it), ["linux/alpine.img", "linux/debian.qcow2", "setup.sh", "tools.iso"])
        self.assertEqual((it["linux/debian.qcow2"]["kind"], it["linux/debian.qcow2"]["format"]), ("disk", "qcow2"))
        self.assertEqual(it["linux/debian.qcow2"]["virtual_size"], 1 << 30)
        self.assertEqual(it["linux/alpine.img"]["format"], "qcow2")
        self.assertEqual(it["tools.iso"]["kind"], "iso")
        self.assertEqual(it["setup.sh"]["kind"], "script")
        with open(os.path.join(self.share, "linux", "debian.qcow2"), "rb") as f:
            self.assertEqual(it["linux/debian.qcow2"]["checksum"], hashlib.sha256(f.read()).hexdigest())
        self.assertEqual(self.index_result["skipped"], 3)   # notes.bin and the two symlinks

    def test_02_shares_are_unique_and_must_exist(self):
        self.refused("POST", "/api/v1/library/shares", {"path": self.share}, 409, "path")
        self.refused("POST", "/api/v1/library/shares", {"path": os.path.join(self.share, "linux")}, 409, "path",
                     contains="overlaps")
        self.refused("POST", "/api/v1/library/shares", {"path": "/nonexistent/dir"}, 422, "path")
        self.refused("POST", "/api/v1/library/shares", {"path": "relative"}, 400, "path")
        self.assertEqual(len(self.d.ok("GET", "/api/v1/library/shares")["items"]), 1)

    def test_03_refresh_sees_new_and_removed_files(self):
        qcow2(os.path.join(self.share, "new.qcow2"), 2 << 20)
        r = self.d.ok("POST", f"/api/v1/library/shares/{self.share_id}/actions/refresh")
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        self.assertIn("new.qcow2", self.items())
        os.unlink(os.path.join(self.share, "new.qcow2"))
        r = self.d.ok("POST", f"/api/v1/library/shares/{self.share_id}/actions/refresh")
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["result"]["forgotten"], 1, job)
        self.assertNotIn("new.qcow2", self.items())

    def test_04_import_by_path_stays_inside_shares(self):
        before = len(self.items())
        self.refused("POST", "/api/v1/library/items", {"path": os.path.join(self.outside, "secret.qcow2")}, 422, "path",
                     contains="not inside any library share")
        self.refused("POST", "/api/v1/library/items", {"path": os.path.join(self.share, "escape.qcow2")}, 422, "path")
        self.refused("POST", "/api/v1/library/items", {"path": os.path.join(self.share, "escape-dir", "secret.qcow2")}, 422, "path")
        self.refused("POST", "/api/v1/library/items", {"path": os.path.join(self.share, "linux", "..", "..", "outside",
                                                                            "secret.qcow2")}, 422, "path")
        self.refused("POST", "/api/v1/library/items", {"path": os.path.join(self.share, "notes.bin")}, 422, "path",
                     contains="neither a disk image")
        self.assertEqual(len(self.items()), before)
        qcow2(os.path.join(self.share, "linux", "late.qcow2"), 8 << 20)
        r = self.d.ok("POST", "/api/v1/library/items", {"path": os.path.join(self.share, "linux", "late.qcow2")})
        self.assertEqual(r["item"]["format"], "qcow2")
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(len(job["result"]["item"]["checksum"]), 64)

    def test_05_streamed_upload(self):
        with open(os.path.join(self.share, "linux", "debian.qcow2"), "rb") as f:
            data = f.read() + b"\0" * 300000
        st, b = self.d.request("POST", f"/api/v1/library/shares/{self.share_id}/upload?name=linux/up.qcow2", raw=data,
                               headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 201, b)
        self.assertEqual(b["item"]["checksum"], hashlib.sha256(data).hexdigest())
        self.assertEqual(b["item"]["size"], len(data))
        with open(os.path.join(self.share, "linux", "up.qcow2"), "rb") as f:
            self.assertEqual(f.read(), data)
        # Refusals: not an image (nothing kept), exists, escapes, no token.
        st, b = self.d.request("POST", f"/api/v1/library/shares/{self.share_id}/upload?name=junk.img", raw=b"abc",
                               headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 422, b)
        self.assertFalse(os.path.exists(os.path.join(self.share, "junk.img")))
        self.assertEqual([f for f in os.listdir(self.share) if f.startswith(".")], [])
        st, b = self.d.request("POST", f"/api/v1/library/shares/{self.share_id}/upload?name=linux/up.qcow2", raw=data,
                               headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 409, b)
        for name in ("../x.qcow2", "escape-dir/x.qcow2", "/tmp/x.qcow2"):
            st, b = self.d.request("POST", f"/api/v1/library/shares/{self.share_id}/upload?name={name}", raw=data,
                                   headers={"Content-Type": "application/octet-stream"})
            self.assertIn(st, (400, 422), (name, b))
            self.assertEqual(b["error"]["field"], "name")
        self.assertFalse(os.path.exists(os.path.join(self.outside, "x.qcow2")))
        st, b = self.d.request("POST", f"/api/v1/library/shares/{self.share_id}/upload?name=y.qcow2", raw=data, auth=False)
        self.assertEqual(st, 401, b)
        self.assertFalse(os.path.exists(os.path.join(self.share, "y.qcow2")))

    # -- templates --
    def test_10_template_crud_and_bad_input(self):
        t = self.template("crud", hostname_pattern="crud-{n}", admin_user="ops", ssh_keys=["ssh-ed25519 AAAA k"],
                          timezone="UTC", user_data="#cloud-config\npackages: [nginx]\n", points=3, disk_size="2G",
                          data_disks=["1G"])
        self.assertEqual(t["base_path"], os.path.join(self.share, "linux", "debian.qcow2"))
        self.assertEqual(t["disk_bytes"], 2 << 30)
        self.assertIn("crud", [x["name"] for x in self.d.ok("GET", "/api/v1/templates")["items"]])
        self.assertEqual(self.d.ok("GET", f"/api/v1/templates/{t['id']}")["points"], 3)
        n = len(self.d.ok("GET", "/api/v1/templates")["items"])
        bad = [
            ({"image": "linux/missing.qcow2"}, 422, "image"),
            ({"image": os.path.join(self.share, "tools.iso")}, 422, "image"),
            ({"image": "setup.sh"}, 422, "image"),
            ({"image": os.path.join(self.outside, "secret.qcow2")}, 422, "image"),
            ({"image": os.path.join(self.share, "escape.qcow2")}, 422, "image"),
            ({"image_id": 99999}, 422, "image_id"),
            ({"user_data": "#cloud-config\n" + "x" * 70000}, 422, "user_data"),
            ({"user_data": "just text"}, 422, "user_data"),
            ({"disk_size": "10M"}, 422, "disk_size"),
            ({"hostname_pattern": "web_{x}"}, 400, "hostname_pattern"),
            ({"ssh_keys": ["not a key"]}, 400, "ssh_keys"),
            ({"firmware": "coreboot"}, 400, "firmware"),
            ({"domain_type": "xen"}, 400, "domain_type"),
            ({"cpus": 0}, 422, "cpus"),
            ({"colour": "blue"}, 400, "colour"),
        ]
        for extra, status, field in bad:
            body = {"name": "bad", "image": "linux/debian.qcow2"}
            body.update(extra)
            if "image_id" in extra:
                del body["image"]
            self.refused("POST", "/api/v1/templates", body, status, field)
        self.refused("POST", "/api/v1/templates", {"name": "crud", "image": "linux/debian.qcow2"}, 409, "name")
        self.assertEqual(len(self.d.ok("GET", "/api/v1/templates")["items"]), n)
        self.d.ok("DELETE", f"/api/v1/templates/{t['id']}")
        self.refused("GET", f"/api/v1/templates/{t['id']}", None, 404)

    def test_11_deploy_linked_clones_and_delete_keeps_the_base(self):
        t = self.template("small", hostname_pattern="web-{n}")
        r = self.d.ok("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "web", "count": 3, "host": "prod1"})
        self.assertEqual([v["name"] for v in r["vms"]], ["web-1", "web-2", "web-3"])
        for j in r["jobs"]:
            job = self.d.wait_job(j["id"])
            self.assertEqual(job["state"], "succeeded", job)
            self.assertEqual(job["result"]["disks"][0]["how"], "linked clone")
        vm = self.d.find("vms", "web-2")
        self.assertEqual(vm["state"], "running")
        self.assertEqual(sorted(d["target"] for d in vm["disks"]), ["hdc", "vda"])
        job = self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])
        self.assertEqual(len(job["result"]["disks_removed"]), 2, job)
        self.assertTrue(os.path.exists(t["base_path"]))
        self.refused("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "web-1", "host": "prod1"}, 409, "name")
        self.refused("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "x", "host": "nohost"}, 422, "host")
        self.refused("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "x", "count": 101}, 422, "count")
        # Placement picks a host of the group when none is given.
        r = self.d.ok("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "placed", "group": "Other"})
        self.assertEqual(self.d.wait_job(r["jobs"][0]["id"])["state"], "succeeded")
        self.assertEqual(self.d.find("vms", "placed")["host_name"], "other1")

    def test_11b_deploy_to_a_named_host_needs_its_memory(self):
        # prod1 has 64 GiB: two 40 GiB VMs do not fit; nothing is created.
        t = self.template("big", memory_mib=40 * 1024)
        before = self.d.count("vms")
        b = self.refused("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "big", "count": 2, "host": "prod1"}, 422, "host",
                         contains="host 'prod1' cannot take VM 'big-2': memory")
        self.assertEqual(b["error"]["code"], "no_capacity")
        self.assertEqual(self.d.count("vms"), before)
        self.d.ok("DELETE", f"/api/v1/templates/{t['id']}")

    def test_12_to_template_refuses_running_vms_and_fails_cleanly(self):
        t = self.template("cap-src")
        r = self.d.ok("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "cap", "host": "prod1"})
        self.assertEqual(self.d.wait_job(r["jobs"][0]["id"])["state"], "succeeded")
        self.refused("POST", "/api/v1/templates/from-vm", {"vm": "cap", "name": "cap-tpl"}, 409, "vm")
        self.refused("POST", "/api/v1/templates/from-vm", {"vm": "nope", "name": "cap-tpl"}, 422, "vm")
        vm = self.d.find("vms", "cap")
        self.d.vm_action(vm["id"], "kill")
        # The test driver keeps no disk data: the copy fails, and leaves nothing.
        r = self.d.ok("POST", "/api/v1/templates/from-vm", {"vm": "cap", "name": "cap-tpl"})
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("cap", job["error"])
        self.assertNotIn("cap-tpl", [x["name"] for x in self.d.ok("GET", "/api/v1/templates")["items"]])
        self.assertEqual([f for f in os.listdir(self.share) if f.startswith((".armada", "cap-"))], [])

    # -- self-service --
    def test_20_self_service_quota_and_isolation(self):
        t = self.template("ss-small", points=2)
        other = self.template("ss-other")
        alice, bob = self.user("alice"), self.user("bob")
        ro = self.user("reader", "read-only")
        g = self.d.ok("POST", "/api/v1/grants", {"user": "alice", "templates": ["ss-small"], "group": "Seattle/Production",
                                                 "points": 5, "max_vms": 5})
        self.assertEqual(g["quota"]["points"], {"limit": 5, "used": 0, "left": 5})
        self.refused("POST", "/api/v1/grants", {"user": "reader", "templates": ["ss-small"], "group": "Other"}, 422, "user")
        self.refused("POST", "/api/v1/grants", {"user": "alice", "templates": ["nope"], "group": "Other"}, 422, "templates")
        self.refused("POST", "/api/v1/grants", {"user": "alice", "templates": ["ss-small"], "group": "Other"}, 403,
                     token=alice)
        # Alice deploys twice (4 of 5 points), placed inside the grant's group.
        r = self.d.ok("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "alice-vm", "count": 2}, token=alice)
        self.assertEqual(r["grant_id"], g["id"])
        for j in r["jobs"]:
            self.assertEqual(self.d.wait_job(j["id"], token=alice)["state"], "succeeded")
        mine = self.d.ok("GET", "/api/v1/vms", token=alice)["items"]
        self.assertEqual(sorted(v["name"] for v in mine), ["alice-vm-1", "alice-vm-2"])
        self.assertEqual({v["host_name"] for v in mine}, {"prod1"})
        # Over quota: refused with the numbers; nothing created.
        n_vms = self.d.count("vms")
        b = self.refused("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "alice-more"}, 422, token=alice)
        self.assertIn("quota: needs 2 points, 1 of 5 left", b["error"]["message"])
        self.assertEqual(self.d.count("vms"), n_vms)
        self.assertIsNone(self.d.find("vms", "alice-more"))
        # Only granted templates, placed automatically, never by host.
        self.refused("POST", f"/api/v1/templates/{other['id']}/deploy", {"name": "x"}, 404, token=alice)
        self.refused("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "x", "host": "prod1"}, 403, "host", token=alice)
        self.refused("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "x"}, 403, token=ro)
        self.assertEqual([x["name"] for x in self.d.ok("GET", "/api/v1/templates", token=alice)["items"]], ["ss-small"])
        self.refused("GET", "/api/v1/library/items", None, 403, token=alice)
        ss = self.d.ok("GET", "/api/v1/self-service", token=alice)
        self.assertEqual(ss["grants"][0]["quota"]["points"], {"limit": 5, "used": 4, "left": 1})
        self.assertEqual(len(ss["vms"]), 2)
        # Bob sees and touches nothing of Alice's, through any endpoint.
        vm = self.d.find("vms", "alice-vm-1")
        self.assertEqual(self.d.ok("GET", "/api/v1/vms", token=bob)["items"], [])
        self.assertEqual(self.d.ok("GET", "/api/v1/vms?name=alice-vm-1", token=bob)["items"], [])
        self.refused("GET", f"/api/v1/vms/{vm['id']}", None, 404, token=bob)
        for action in ("start", "stop", "kill", "pause", "resume"):
            self.refused("POST", f"/api/v1/vms/{vm['id']}/actions/{action}", None, 404, token=bob)
        self.refused("DELETE", f"/api/v1/vms/{vm['id']}", None, 404, token=bob)
        self.assertNotIn("alice-vm-1", json.dumps(self.d.ok("GET", "/api/v1/jobs", token=bob)))
        self.assertNotIn("alice-vm-1", json.dumps(self.d.ok("GET", "/api/v1/events", token=bob)))
        self.assertEqual(self.d.ok("GET", "/api/v1/self-service", token=bob)["vms"], [])
        self.refused("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "bob-vm"}, 404, token=bob)
        self.refused("GET", "/api/v1/grants", None, 403, token=bob)
        # Alice manages her own VM; deleting it gives the points back.
        self.assertEqual(self.d.wait_job(self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/kill", token=alice)["job"]["id"],
                                         token=alice)["state"], "succeeded")
        job = self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}", token=alice)["job"]
        self.assertEqual(self.d.wait_job(job["id"], token=alice)["state"], "succeeded")
        self.assertEqual(self.d.ok("GET", "/api/v1/self-service", token=alice)["grants"][0]["quota"]["points"]["left"], 3)
        # A grant without "deploy" does not let her deploy.
        self.d.ok("DELETE", f"/api/v1/grants/{g['id']}")
        self.d.ok("POST", "/api/v1/grants", {"user": "alice", "templates": ["ss-small"], "group": "Seattle/Production",
                                             "actions": "start,stop"})
        self.refused("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "alice-3"}, 403, token=alice)

    def test_21_grant_actions_limit_what_the_user_may_do(self):
        t = self.template("ss-limited", points=1)
        carol = self.user("carol")
        self.d.ok("POST", "/api/v1/grants", {"user": "carol", "templates": ["ss-limited"], "group": "Seattle/Production",
                                             "points": 5, "actions": "deploy,start,stop"})
        r = self.d.ok("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "carol-vm"}, token=carol)
        self.assertEqual(self.d.wait_job(r["jobs"][0]["id"], token=carol)["state"], "succeeded")
        vm = self.d.find("vms", "carol-vm")
        job = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/start", token=carol)["job"]
        self.assertEqual(self.d.wait_job(job["id"], token=carol)["state"], "succeeded")
        for method, path in (("POST", f"/api/v1/vms/{vm['id']}/actions/pause"),
                             ("POST", f"/api/v1/vms/{vm['id']}/actions/kill"),
                             ("DELETE", f"/api/v1/vms/{vm['id']}")):
            self.refused(method, path, None, 403, token=carol)
        self.assertEqual(self.d.vm(vm["id"])["state"], "running")
        # The administrator is not bound by the user's grant.
        self.assertEqual(self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])["state"], "succeeded")

    # -- CLI --
    def test_30_cli(self):
        home = tempfile.mkdtemp(prefix="armada-lib-cli-")
        env = dict(os.environ, HOME=home, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, ASAN_OPTIONS="detect_leaks=0")

        def cli(*args, ok=True):
            r = subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=60)
            if ok:
                self.assertEqual(r.returncode, 0, f"armada {' '.join(args)}: {r.stderr}")
            return r
        try:
            self.assertIn(self.share, cli("library", "shares").stdout)
            self.assertIn("tools.iso", cli("library", "list", "--kind", "iso").stdout)
            src = os.path.join(home, "cli.qcow2")
            qcow2(src, 32 << 20)
            out = cli("library", "import", src, "--name", "cli/cli.qcow2", ok=False)
            self.assertNotEqual(out.returncode, 0)   # no directory 'cli' in the share
            out = cli("library", "import", src).stdout
            self.assertIn("uploaded", out)
            self.assertTrue(os.path.exists(os.path.join(self.share, "cli.qcow2")))
            cli("template", "create", "cli-tpl", "--image", "cli.qcow2", "--memory", "64", "--hostname", "c-{n}")
            self.assertIn("cli-tpl", cli("template", "list").stdout)
            out = cli("vm", "create", "clivm", "--template", "cli-tpl", "--count", "2", "--host", "prod1", "--wait").stdout
            self.assertEqual(out.count("succeeded"), 2, out)
            self.assertIn("clivm-2", cli("vm", "list").stdout)
            r = cli("vm", "create", "x", "--template", "cli-tpl", "--cpus", "2", ok=False)
            self.assertEqual(r.returncode, 1)
            self.user("carol")
            cli("grant", "create", "--user", "carol", "--templates", "cli-tpl", "--group", "Other", "--points", "3")
            self.assertRegex(cli("grant", "list").stdout, r"carol\s+Other\s+cli-tpl\s+0/3")
            cli("vm", "kill", "clivm-1", "--wait")
            r = cli("vm", "to-template", "clivm-1", "cli-gold", "--wait", ok=False)
            self.assertEqual(r.returncode, 1)   # the test driver has no disk data to copy
            self.assertIn("clivm-1", r.stderr)
        finally:
            shutil.rmtree(home, ignore_errors=True)


class UploadLimitTest(unittest.TestCase):
    def test_uploads_above_the_configured_limit_are_refused(self):
        tmp = tempfile.mkdtemp(prefix="armada-lib-limit-")
        try:
            with Armadad(["--library-upload-max", "8K"]) as d:
                d.token = d.login()
                share = d.ok("POST", "/api/v1/library/shares", {"path": tmp})["share"]
                path = f"/api/v1/library/shares/{share['id']}/upload?name=big.img"
                st, b = d.request("POST", path, raw=b"\0" * 16384, headers={"Content-Type": "application/octet-stream"})
                self.assertEqual(st, 413, b)
                self.assertIn("8192", b["error"]["message"])
                st, b = d.request("POST", path.replace("big", "small"), raw=b"\0" * 4096,
                                  headers={"Content-Type": "application/octet-stream"})
                self.assertEqual(st, 201, b)
                self.assertEqual(sorted(os.listdir(tmp)), ["small.img"])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
