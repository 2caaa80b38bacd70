"""A VM's virtual hardware (issue 12: vCPUs, memory, disks, the CD-ROM with
library ISOs, the boot order) against a real armadad on libvirt's test
driver, which keeps definitions and sizes but no data: the API's shapes,
what is applied live and what for the next boot, the VM's row following,
validation (bad sizes, a shrink, unknown or escaping ISOs: 4xx naming the
field, nothing half-made), scoping (read-only 403, self-service 404) and
the CLI. Live changes on real QEMU: tests/system/test_hardware_kvm.py."""
import os
import shutil
import struct
import subprocess
import tempfile
import unittest

from armada_harness import ARMADA, Armadad, wait_until


def fake_qcow2(path, virtual_size):
    with open(path, "wb") as f:
        f.write((b"QFI\xfb" + struct.pack(">IQIIQ", 3, 0, 0, 16, virtual_size)).ljust(4096, b"\0"))


def fake_iso(path):
    with open(path, "wb") as f:
        f.write(b"\0" * 0x8001 + b"CD001" + b"\0" * 0x1000)


class HardwareTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-hw-it-")
        cls.share = os.path.join(cls.tmp, "share")
        os.makedirs(os.path.join(cls.share, "isos"))
        fake_iso(os.path.join(cls.share, "isos", "installer.iso"))
        fake_iso(os.path.join(cls.share, "isos", "escape.iso"))
        fake_qcow2(os.path.join(cls.share, "base.qcow2"), 64 << 20)
        cls.outside = os.path.join(cls.tmp, "outside.iso")
        fake_iso(cls.outside)
        cls.d = d = Armadad()
        try:
            d.start()
            d.token = d.login()
            d.ok("POST", "/api/v1/host-groups", {"path": "Lab"})
            host, job = d.add_host("h1", d.test_node_uri("h1", memory_mib=4096), group="Lab")
            assert job["state"] == "succeeded", job
            r = d.ok("POST", "/api/v1/library/shares", {"path": cls.share})
            job = d.wait_job(r["job"]["id"])
            assert job["state"] == "succeeded", job
            # Indexed as a file; now a link out of the share.
            os.unlink(os.path.join(cls.share, "isos", "escape.iso"))
            os.symlink(cls.outside, os.path.join(cls.share, "isos", "escape.iso"))
            d.ok("POST", "/api/v1/users", {"name": "ro", "password": "ro-password", "role": "read-only"})
            d.ok("POST", "/api/v1/users", {"name": "ss", "password": "ss-password", "role": "self-service"})
            cls.ro = d.login("ro", "ro-password")
            cls.ss = d.login("ss", "ss-password")
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

    def new_vm(self, name, **kw):
        vm = self.d.create_vm(name, "h1", disk_size="1G", **kw)
        self.addCleanup(self.delete_vm, vm["id"])
        return vm

    def delete_vm(self, vm_id):
        st, b = self.d.request("DELETE", f"/api/v1/vms/{vm_id}")
        if st == 202:
            self.d.wait_job(b["job"]["id"])

    def hw(self, vm_id, token=None):
        return self.d.ok("GET", f"/api/v1/vms/{vm_id}/hardware", token=token)

    def audit_actions(self):
        return [a["action"] for a in self.d.ok("GET", "/api/v1/audit?limit=200")["items"]]

    def cli(self, *args):
        env = dict(os.environ, HOME=self.tmp, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, ASAN_OPTIONS="detect_leaks=0")
        return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=60)

    # -- vCPUs and memory --
    def test_01_stopped_vm_changes_for_next_boot_and_row_follows(self):
        vm = self.new_vm("hw-stopped")
        hw = self.hw(vm["id"])
        self.assertFalse(hw["running"])
        self.assertEqual((hw["cpus"], hw["memory_mib"]), (1, 64))
        self.assertEqual(hw["boot_order"], ["disk"])
        self.assertEqual([x["target"] for x in hw["disks"]], ["vda"])
        r = self.d.ok("PATCH", f"/api/v1/vms/{vm['id']}/hardware", {"cpus": 2, "memory_mib": 128})
        self.assertEqual(r["applied"], {"cpus": "next_boot", "memory_mib": "next_boot"})
        self.assertEqual((r["vm"]["cpus"], r["vm"]["memory_mib"]), (2, 128))
        hw = self.hw(vm["id"])
        self.assertEqual((hw["next_boot"]["cpus"], hw["next_boot"]["memory_mib"]), (2, 128))
        self.assertGreaterEqual(hw["next_boot"]["max_memory_mib"], 128)
        # Maxima: cpus within max_cpus, memory below a new maximum.
        r = self.d.ok("PATCH", f"/api/v1/vms/{vm['id']}/hardware", {"max_cpus": 4, "max_memory_mib": 256})
        self.assertEqual(r["applied"], {"max_cpus": "next_boot", "max_memory_mib": "next_boot"})
        hw = self.hw(vm["id"])
        self.assertEqual((hw["next_boot"]["cpus"], hw["next_boot"]["max_cpus"]), (2, 4))
        self.assertEqual((hw["next_boot"]["memory_mib"], hw["next_boot"]["max_memory_mib"]), (128, 256))
        self.assertIn("vm.hardware", self.audit_actions())
        wait_until(lambda: self.d.vm(vm["id"])["cpus"] == 2, 5, what="the row to keep 2 vCPUs")

    def test_02_running_vm_balloon_is_live_and_more_vcpus_wait_for_boot(self):
        vm = self.new_vm("hw-running", start=True)
        wait_until(lambda: self.d.vm(vm["id"])["state"] == "running", 10, what="the VM to run")
        r = self.d.ok("PATCH", f"/api/v1/vms/{vm['id']}/hardware", {"memory_mib": 48, "cpus": 3})
        self.assertEqual(r["applied"]["memory_mib"], "live")
        self.assertEqual(r["applied"]["cpus"], "next_boot")   # above the running maximum of 1
        hw = self.hw(vm["id"])
        self.assertTrue(hw["running"])
        self.assertEqual(hw["memory_mib"], 48)
        self.assertEqual(hw["cpus"], 1)
        self.assertEqual(hw["next_boot"]["cpus"], 3)
        self.assertEqual(self.d.vm(vm["id"])["memory_mib"], 48)
        # Reconcile rounds later the row still says what the guest has.
        refreshes = 0
        def rounds():
            nonlocal refreshes
            refreshes += 1
            return refreshes > 6
        wait_until(rounds, 10, interval=0.5, what="a few reconcile rounds")
        self.assertEqual(self.d.vm(vm["id"])["memory_mib"], 48)

    def test_03_validation_names_the_field(self):
        vm = self.new_vm("hw-valid")
        p = f"/api/v1/vms/{vm['id']}/hardware"
        self.refused("PATCH", p, {}, 400)
        self.refused("PATCH", p, {"cpus": 0}, 422, "cpus")
        self.refused("PATCH", p, {"cpus": "two"}, 400, "cpus")
        self.refused("PATCH", p, {"memory_mib": 1}, 422, "memory_mib")
        self.refused("PATCH", p, {"gpus": 1}, 400)
        self.refused("PATCH", p, {"cpus": 4, "max_cpus": 2}, 400, "cpus")
        self.refused("PATCH", p, {"max_memory_mib": 32}, 400, "max_memory_mib")   # below the 64 MiB it keeps
        # More memory than the host has after its reserve: refused with placement's reason.
        b = self.refused("PATCH", p, {"memory_mib": 1 << 20}, 409, "memory_mib")
        self.assertEqual(b["error"]["code"], "no_capacity")
        self.assertIn("h1", b["error"]["message"])
        hw = self.hw(vm["id"])
        self.assertEqual((hw["next_boot"]["cpus"], hw["next_boot"]["memory_mib"]), (1, 64))   # nothing changed
        self.refused("PATCH", "/api/v1/vms/999999/hardware", {"cpus": 2}, 404)

    # -- disks --
    def test_04_disk_add_grow_remove(self):
        vm = self.new_vm("hw-disks")
        p = f"/api/v1/vms/{vm['id']}/disks"
        r = self.d.ok("POST", p, {"size": "2G"})
        self.assertEqual(r["disk"]["target"], "vdb")
        self.assertEqual(r["disk"]["size_bytes"], 2 << 30)
        self.assertEqual(r["applied"], "next_boot")
        self.assertIn("vdb", [x["target"] for x in r["vm"]["disks"]])
        r2 = self.d.ok("POST", p, {"size_bytes": 1 << 30, "bus": "sata"})
        self.assertEqual(r2["disk"]["target"], "sda")
        self.assertEqual(sorted(x["target"] for x in self.hw(vm["id"])["disks"]), ["sda", "vda", "vdb"])
        # Only growing.
        self.refused("PATCH", f"{p}/vdb", {"size": "1G"}, 400, "size", contains="only grow")
        self.refused("PATCH", f"{p}/vdb", {"size": "2G"}, 400, "size")
        self.refused("PATCH", f"{p}/vdz", {"size": "4G"}, 404, "target")
        self.refused("POST", p, {"size": "lots"}, 400, "size")
        self.refused("POST", p, {"size": "0"}, 422, "size")
        self.refused("POST", p, {"size": "100T"}, 422, "size")
        self.refused("POST", p, {}, 400, "size")
        self.refused("POST", p, {"size": "1G", "size_bytes": 1 << 30}, 400, "size")
        self.refused("POST", p, {"size": "1G", "bus": "ide"}, 400, "bus")
        r = self.d.ok("DELETE", f"{p}/sda")
        self.assertTrue(r["volume_deleted"])
        r = self.d.ok("DELETE", f"{p}/vdb?keep_volume=true")
        self.assertFalse(r["volume_deleted"])
        self.assertEqual([x["target"] for x in self.hw(vm["id"])["disks"]], ["vda"])
        self.refused("DELETE", f"{p}/vdb", None, 404, "target")
        self.refused("DELETE", f"{p}/vda?keep_volume=maybe", None, 400, "keep_volume")
        acts = self.audit_actions()
        for a in ("vm.disk-add", "vm.disk-remove"):
            self.assertIn(a, acts)

    # -- CD and boot order --
    def test_05_cd_from_library_and_boot_order(self):
        vm = self.new_vm("hw-cd")
        r = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/cd", {"iso": "installer.iso"})
        self.assertEqual(r["iso"]["rel_path"], "isos/installer.iso")
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(job["result"]["applied"], "next_boot")   # a new drive: for the next boot
        drive = job["result"]["drive"]
        self.assertEqual(drive, "hdc")
        disks = {x["target"]: x for x in self.hw(vm["id"])["disks"]}
        self.assertIn("hdc", disks)
        # By id too, and the drive is reused.
        r = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/cd", {"iso": r["iso"]["id"]})
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual((job["state"], job["result"]["drive"]), ("succeeded", "hdc"), job)
        r = self.d.ok("PUT", f"/api/v1/vms/{vm['id']}/boot-order", {"order": ["cd", "disk"]})
        self.assertEqual(r["boot_order"], ["cd", "disk"])
        self.assertEqual(self.hw(vm["id"])["boot_order"], ["cd", "disk"])
        # The CD-ROM drive is not a disk to resize or remove.
        self.refused("DELETE", f"/api/v1/vms/{vm['id']}/disks/hdc", None, 400, "target")
        r = self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}/cd")
        self.assertEqual(r["drive"], "hdc")
        self.assertNotIn("hdc", [x["target"] for x in self.hw(vm["id"])["disks"]])
        for a in ("vm.cd-insert", "vm.cd-eject", "vm.boot-order"):
            self.assertIn(a, self.audit_actions())

    def test_06_iso_and_boot_order_validation(self):
        vm = self.new_vm("hw-cd-bad")
        p = f"/api/v1/vms/{vm['id']}/cd"
        jobs_before = len(self.d.ok("GET", "/api/v1/jobs?limit=500")["items"])
        self.refused("POST", p, {"iso": "nothing.iso"}, 422, "iso")
        self.refused("POST", p, {"iso": 999999}, 422, "iso")
        b = self.refused("POST", p, {"iso": "/etc/passwd"}, 422, "iso")
        self.assertNotIn("root:", b["error"]["message"])
        self.refused("POST", p, {"iso": self.outside}, 422, "iso")     # outside the library: never opened
        b = self.refused("POST", p, {"iso": "escape.iso"}, 400, "iso")  # a link out of its share
        self.assertNotIn(self.outside, b["error"]["message"])
        self.refused("POST", p, {"iso": ""}, 400, "iso")
        self.refused("POST", p, {}, 400, "iso")
        self.assertEqual(len(self.d.ok("GET", "/api/v1/jobs?limit=500")["items"]), jobs_before)   # no job queued
        bo = f"/api/v1/vms/{vm['id']}/boot-order"
        self.refused("PUT", bo, {"order": ["floppy"]}, 400, "order")
        self.refused("PUT", bo, {"order": ["cd", "cd"]}, 400, "order")
        self.refused("PUT", bo, {"order": []}, 400, "order")
        self.refused("PUT", bo, {"order": "cd,disk"}, 400, "order")
        self.assertEqual(self.hw(vm["id"])["boot_order"], ["disk"])

    def test_06b_template_names_an_iso_attached_at_deploy(self):
        d = self.d
        t = d.ok("POST", "/api/v1/templates", {"name": "with-iso", "image": "base.qcow2", "iso": "isos/installer.iso",
                                               "memory_mib": 64})
        self.assertEqual(t["iso_rel_path"], "isos/installer.iso")
        self.addCleanup(d.request, "DELETE", f"/api/v1/templates/{t['id']}")
        self.refused("POST", "/api/v1/templates", {"name": "bad-iso", "image": "base.qcow2", "iso": "base.qcow2"}, 422, "iso")
        self.refused("POST", "/api/v1/templates", {"name": "bad-iso", "image": "base.qcow2", "iso": "none.iso"}, 422, "iso")
        self.refused("POST", "/api/v1/templates", {"name": "bad-iso", "image": "base.qcow2", "iso_id": 999999}, 422, "iso_id")
        r = d.ok("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "from-iso-tpl", "host": "h1"})
        job = d.wait_job(r["jobs"][0]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        vm = d.find("vms", "from-iso-tpl")
        self.addCleanup(self.delete_vm, vm["id"])
        self.assertEqual(sorted(x["target"] for x in vm["disks"]), ["hdc", "hdd", "vda"])   # seed hdc, the ISO hdd
        hdd = [x for x in vm["disks"] if x["target"] == "hdd"][0]
        self.assertTrue(hdd["path"].endswith("installer.iso"), hdd)

    # -- scoping --
    def test_07_scoping(self):
        vm = self.new_vm("hw-scope")
        i = vm["id"]
        # Read-only: may read, may not change (audited as denied).
        self.assertEqual(self.hw(i, token=self.ro)["cpus"], 1)
        for method, path, body in (("PATCH", f"/api/v1/vms/{i}/hardware", {"cpus": 2}),
                                   ("POST", f"/api/v1/vms/{i}/disks", {"size": "1G"}),
                                   ("DELETE", f"/api/v1/vms/{i}/disks/vda", None),
                                   ("POST", f"/api/v1/vms/{i}/cd", {"iso": "installer.iso"}),
                                   ("DELETE", f"/api/v1/vms/{i}/cd", None),
                                   ("PUT", f"/api/v1/vms/{i}/boot-order", {"order": ["cd"]})):
            self.refused(method, path, body, 403, token=self.ro)
            # Self-service: someone else's VM does not exist for it.
            self.refused(method, path, body, 404, token=self.ss)
        self.refused("GET", f"/api/v1/vms/{i}/hardware", None, 404, token=self.ss)
        hw = self.hw(i)
        self.assertEqual((hw["next_boot"]["cpus"], len(hw["disks"]), hw["boot_order"]), (1, 1, ["disk"]))

    def test_07b_self_service_sizes_its_own_vm_within_its_quota(self):
        d = self.d
        t = d.ok("POST", "/api/v1/templates", {"name": "quota-tpl", "image": "base.qcow2", "memory_mib": 64})
        self.addCleanup(d.request, "DELETE", f"/api/v1/templates/{t['id']}")
        d.ok("POST", "/api/v1/users", {"name": "ssq", "password": "ssq-password", "role": "self-service"})
        tok = d.login("ssq", "ssq-password")
        d.ok("POST", "/api/v1/grants", {"user": "ssq", "templates": ["quota-tpl"], "group": "Lab", "max_cpus": 2,
                                        "max_memory_mib": 256})
        r = d.ok("POST", f"/api/v1/templates/{t['id']}/deploy", {"name": "ss-own", "start": False}, token=tok)
        job = d.wait_job(r["jobs"][0]["id"], token=tok)
        self.assertEqual(job["state"], "succeeded", job)
        i = r["vms"][0]["id"]
        self.addCleanup(self.delete_vm, i)
        p = f"/api/v1/vms/{i}/hardware"
        # Over the quota: 403 naming the field, audited, nothing changed.
        b = self.refused("PATCH", p, {"cpus": 3}, 403, "cpus", token=tok)
        self.assertIn("quota", b["error"]["message"])
        self.refused("PATCH", p, {"memory_mib": 512}, 403, "memory_mib", token=tok)
        self.assertEqual(self.hw(i, token=tok)["next_boot"]["cpus"], 1)
        # Within it: done, and the quota counts it.
        r = d.ok("PATCH", p, {"cpus": 2, "memory_mib": 200}, token=tok)
        self.assertEqual(r["applied"], {"cpus": "next_boot", "memory_mib": "next_boot"})
        g = [x for x in d.ok("GET", "/api/v1/grants")["items"] if x["user_name"] == "ssq"][0]
        self.assertEqual(g["quota"]["cpus"]["used"], 2)
        # Disks, CDs and boot order stay the operators'.
        self.refused("POST", f"/api/v1/vms/{i}/disks", {"size": "1G"}, 403, token=tok)
        self.refused("PUT", f"/api/v1/vms/{i}/boot-order", {"order": ["cd"]}, 403, token=tok)

    # -- CLI --
    def test_08_cli(self):
        vm = self.new_vm("hw-cli")
        r = self.cli("vm", "set", "hw-cli", "--cpus", "2", "--memory", "96", "--description", "resized")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cpus 2 (from the next boot)", r.stdout)
        self.assertIn("memory_mib 96", r.stdout)
        v = self.d.vm(vm["id"])
        self.assertEqual((v["cpus"], v["memory_mib"], v["description"]), (2, 96, "resized"))
        r = self.cli("vm", "disk", "add", "hw-cli", "--size", "1G")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("disk vdb", r.stdout)
        r = self.cli("vm", "disk", "resize", "hw-cli", "vdb", "--size", "512M")
        self.assertEqual(r.returncode, 1)
        self.assertIn("only grow", r.stderr)
        r = self.cli("vm", "disk", "remove", "hw-cli", "vdb")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli("vm", "cd", "insert", "hw-cli", "installer.iso", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli("vm", "boot-order", "hw-cli", "cd,disk")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli("vm", "hardware", "hw-cli")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cd,disk", r.stdout)
        self.assertIn("hdc", r.stdout)
        r = self.cli("vm", "cd", "eject", "hw-cli")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.cli("vm", "set", "hw-cli", "--memory", "lots")
        self.assertEqual(r.returncode, 1)


if __name__ == "__main__":
    unittest.main()
