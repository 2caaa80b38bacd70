"""Clone, export and import (issue 12) against a real armadad with libvirt
test-driver hosts: the API's shape, validation, scoping and 4xx, and the
import job's conversion with the real qemu-img (the test driver keeps no
data, so the disks' bytes are checked on the test bed: test_export_kvm.py).
Nothing half-made: a refused import records no VM, a failed job removes
the VM it recorded."""
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
import unittest

from armada_harness import ARMADA, Armadad, wait_until

OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" ovf:version="1.0">
  <References><File ovf:id="file1" ovf:href="{href}" ovf:size="{size}"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte"/>
  </DiskSection>
  <VirtualSystem ovf:id="{name}"><Info>vm</Info><Name>{name}</Name>
    <VirtualHardwareSection><Info>hw</Info>
      <Item><rasd:ElementName>cpu</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>mem</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>{memory}</rasd:VirtualQuantity></Item>
      <Item><rasd:ElementName>disk1</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:Connection>lan</rasd:Connection><rasd:ElementName>eth0</rasd:ElementName><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def make_ova(path, disk, name="ovavm", cpus=2, memory=256, size=None, capacity=32 << 20, manifest=True, bad_digest=False,
             ovf_text=None):
    """An OVA (ustar: descriptor first, manifest, disk) around the file disk."""
    with open(disk, "rb") as f:
        data = f.read()
    href = os.path.basename(disk)
    ovf = (ovf_text or OVF.format(href=href, size=len(data) if size is None else size, capacity=capacity, name=name, cpus=cpus,
                                  memory=memory)).encode()
    members = [(name + ".ovf", ovf)]
    if manifest:
        mf = f"SHA256({name}.ovf)= {sha256(ovf)}\nSHA256({href})= {sha256(data + (b'x' if bad_digest else b''))}\n"
        members.append((name + ".mf", mf.encode()))
    members.append((href, data))
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as t:
        for n, d in members:
            ti = tarfile.TarInfo(n)
            ti.size = len(d)
            t.addfile(ti, io.BytesIO(d))
    return path


class ExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("qemu-img"):
            raise unittest.SkipTest("qemu-img is not installed")
        cls.tmp = tempfile.mkdtemp(prefix="armada-export-it-")
        cls.root = os.path.join(cls.tmp, "exports")
        cls.outside = os.path.join(cls.tmp, "outside")
        os.makedirs(cls.root)
        os.makedirs(cls.outside)
        # A known disk: 8 MiB of raw with a pattern, in every format.
        cls.raw = os.path.join(cls.root, "known.raw")
        with open(cls.raw, "wb") as f:
            f.write(bytes(range(256)) * 4096 * 4 + b"\0" * (4 << 20))
        for fmt, ext in (("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vpc", "vhd"), ("vhdx", "vhdx")):
            qemu_img("convert", "-f", "raw", "-O", fmt, cls.raw, os.path.join(cls.root, "known." + ext))
        cls.d = Armadad(args=["--export-root", cls.root]).start()
        cls.d.token = cls.d.login()
        cls.d.request("POST", "/api/v1/host-groups", {"path": "Lab"})
        cls.d.request("POST", "/api/v1/host-groups", {"path": "Other"})
        for name, group in (("t1", "Lab"), ("t2", "Lab"), ("o1", "Other")):
            _, job = cls.d.add_host(name, cls.d.test_node_uri(name), group=group)
            assert job["state"] == "succeeded", job
        cls.d.ok("POST", "/api/v1/users", {"name": "viewer", "password": "password-v", "role": "read-only"})
        cls.viewer = cls.d.login("viewer", "password-v")

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.cleanup()
        finally:
            shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers --
    def imp(self, body, expect=202):
        st, b = self.d.request("POST", "/api/v1/vms/import", body)
        self.assertEqual(st, expect, b)
        return b

    def imported(self, body):
        b = self.imp(body)
        job = self.d.wait_job(b["job"]["id"], timeout=120)
        self.assertEqual(job["state"], "succeeded", job)
        vm = self.d.find("vms", b["vm"]["name"])
        self.assertEqual(vm["state"], "stopped")
        return b, job, vm

    def refused(self, body, field="path", status=400, text=None):
        names = {v["name"] for v in self.d.ok("GET", "/api/v1/vms")["items"]}
        b = self.imp(body, expect=status)
        self.assertEqual(b["error"]["field"], field, b)
        if text:
            self.assertIn(text, b["error"]["message"])
        self.assertEqual({v["name"] for v in self.d.ok("GET", "/api/v1/vms")["items"]}, names, "nothing recorded")
        return b["error"]["message"]

    def delete(self, name):
        vm = self.d.find("vms", name)
        job = self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)

    def stopped_vm(self, name, host="t1"):
        b = self.d.ok("POST", "/api/v1/vms", {"name": name, "host": host, "cpus": 2, "memory_mib": 256, "disk_size": "64M"})
        self.assertEqual(self.d.wait_job(b["job"]["id"])["state"], "succeeded")
        vm = self.d.find("vms", name)
        if vm["state"] != "stopped":
            j = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/kill")["job"]
            self.d.wait_job(j["id"])
            wait_until(lambda: self.d.find("vms", name)["state"] == "stopped", 20, what=f"{name} to stop")
        return self.d.find("vms", name)

    # -- import of images --
    def test_images_of_every_format_are_converted(self):
        for ext, fmt in (("qcow2", "qcow2"), ("vmdk", "vmdk"), ("vhd", "vpc"), ("vhdx", "vhdx"), ("raw", "raw")):
            with self.subTest(ext=ext):
                b, job, vm = self.imported({"path": os.path.join(self.root, "known." + ext), "name": "img-" + ext,
                                            "host": "t1", "memory_mib": 128})
                self.assertEqual(b["source"]["kind"], "image")
                self.assertEqual(b["source"]["disks"][0]["format"], fmt)
                # VHD rounds up to its disk geometry.
                self.assertTrue(8 << 20 <= b["source"]["disks"][0]["capacity"] < 9 << 20, b["source"])
                self.assertEqual(vm["memory_mib"], 128)
                self.assertEqual(vm["cpus"], 1)
                self.assertEqual([d["target"] for d in vm["disks"]], ["vda"])
                self.delete("img-" + ext)

    def test_vmx_with_vmdk(self):
        d = os.path.join(self.root, "vmx1")
        os.makedirs(d)
        qemu_img("convert", "-f", "raw", "-O", "vmdk", self.raw, os.path.join(d, "web-0.vmdk"))
        with open(os.path.join(d, "web.vmx"), "w") as f:
            f.write('.encoding = "UTF-8"\nconfig.version = "8"\ndisplayName = "vmxweb"\nnumvcpus = "2"\nmemsize = "384"\n'
                    'scsi0.present = "TRUE"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "web-0.vmdk"\n'
                    'ide1:0.present = "TRUE"\nide1:0.deviceType = "cdrom-image"\nide1:0.fileName = "tools.iso"\n'
                    'ethernet0.present = "TRUE"\nethernet0.networkName = "VM Network"\n')
        b, job, vm = self.imported({"path": os.path.join(d, "web.vmx"), "host": "t2"})
        self.assertEqual(vm["name"], "vmxweb")
        self.assertEqual((vm["cpus"], vm["memory_mib"]), (2, 384))
        self.assertEqual(b["source"]["kind"], "vmx")
        self.assertEqual(b["source"]["nics"], [{"network": "VM Network", "mac": None}])
        self.assertEqual(len(b["source"]["disks"]), 1)
        self.delete("vmxweb")

    def test_ova_with_manifest(self):
        disk = os.path.join(self.tmp, "ova-disk1.vmdk")
        qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", self.raw, disk)
        ova = make_ova(os.path.join(self.root, "good.ova"), disk, name="ovavm", cpus=3, memory=200)
        b, job, vm = self.imported({"path": ova, "group": "Lab"})
        self.assertEqual((vm["name"], vm["cpus"], vm["memory_mib"]), ("ovavm", 3, 200))
        self.assertEqual(b["source"]["kind"], "ova")
        self.assertEqual(b["source"]["disks"][0]["format"], "vmdk")
        self.assertEqual(b["source"]["nics"][0]["network"], "lan")
        self.assertIn(vm["host_name"], ("t1", "t2"))   # placed in Lab
        events = self.d.ok("GET", "/api/v1/events?limit=50")["items"]
        self.assertTrue(any(e["kind"] == "vm.imported" and e["object_name"] == "ovavm" for e in events))
        audit = self.d.ok("GET", "/api/v1/audit?limit=50")["items"]
        self.assertTrue(any(a["action"] == "vm.import" and a["object_name"] == "ovavm" for a in audit))
        self.delete("ovavm")

    def test_ova_whose_manifest_does_not_match_leaves_nothing(self):
        disk = os.path.join(self.tmp, "bad-disk1.vmdk")
        qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", self.raw, disk)
        ova = make_ova(os.path.join(self.root, "tampered.ova"), disk, name="tampered", bad_digest=True)
        b = self.imp({"path": ova, "host": "t1"})
        job = self.d.wait_job(b["job"]["id"], timeout=60)
        self.assertEqual(job["state"], "failed")
        self.assertIn("does not match the OVA's manifest", job["error"])
        self.assertIsNone(self.d.find("vms", "tampered"))

    def test_library_indexes_vhd(self):
        share = os.path.join(self.tmp, "deck")
        os.makedirs(share)
        qemu_img("convert", "-f", "raw", "-O", "vpc", self.raw, os.path.join(share, "deck.vhd"))
        qemu_img("convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed", self.raw, os.path.join(share, "fixed.vhd"))
        r = self.d.ok("POST", "/api/v1/library/shares", {"path": share})
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        items = {i["rel_path"]: i for i in self.d.ok("GET", f"/api/v1/library/items?share_id={r['share']['id']}")["items"]}
        self.assertEqual(sorted(items), ["deck.vhd", "fixed.vhd"])
        for i in items.values():
            self.assertEqual((i["kind"], i["format"]), ("disk", "vhd"))
            self.assertTrue(8 << 20 <= i["virtual_size"] < 9 << 20, i)
        # An image of a share imports too.
        b, job, vm = self.imported({"path": os.path.join(share, "fixed.vhd"), "name": "from-share", "host": "t1",
                                    "memory_mib": 64})
        self.assertEqual(b["source"]["disks"][0]["format"], "vpc")
        self.delete("from-share")

    def test_cli(self):
        env = dict(os.environ, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, HOME=self.tmp, ASAN_OPTIONS="detect_leaks=0")

        def cli(*args):
            return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=120)
        r = cli("vm", "import", os.path.join(self.root, "known.vmdk"), "--name", "cli-imp", "--host", "t1", "--memory", "64",
                "--cpus", "2", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        vm = self.d.find("vms", "cli-imp")
        self.assertEqual((vm["cpus"], vm["memory_mib"], vm["state"]), (2, 64, "stopped"))
        r = cli("vm", "clone", "cli-imp", "cli-twin", "--host", "t2", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.d.find("vms", "cli-twin")["host_name"], "t2")
        r = cli("vm", "export", "cli-imp", "--to", self.outside)
        self.assertEqual(r.returncode, 1)
        self.assertIn("not under the export root", r.stderr)
        self.assertIn("field: to", r.stderr)
        r = cli("vm", "import", os.path.join(self.root, "known.vmdk"), "--host", "t1", "--group", "Lab")
        self.assertNotEqual(r.returncode, 0)
        for n in ("cli-twin", "cli-imp"):
            self.delete(n)

    # -- bad input: 400 naming the field, nothing recorded --
    def test_paths_outside_the_allowed_roots(self):
        secret = os.path.join(self.outside, "secret.qcow2")
        qemu_img("create", "-f", "qcow2", secret, "1M")
        self.refused({"path": secret}, text="neither under armadad's export root")
        os.symlink(secret, os.path.join(self.root, "link.qcow2"))
        self.refused({"path": os.path.join(self.root, "link.qcow2")}, text="neither under")
        self.refused({"path": "relative/x.ova"}, text="absolute")
        self.refused({"path": os.path.join(self.root, "missing.ova")}, text="does not exist")

    def test_vmdk_descriptor_pointing_outside(self):
        d = os.path.join(self.root, "evil-vmdk")
        os.makedirs(d)
        flat = os.path.join(self.outside, "flat.bin")
        with open(flat, "wb") as f:
            f.write(b"TOPSECRET" * 1000 + b"\0" * (1 << 20))
        for i, extent in enumerate((flat, "../../outside/flat.bin")):
            with open(os.path.join(d, f"evil{i}.vmdk"), "w") as f:
                f.write('# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
                        f'RW 2048 FLAT "{extent}" 0\n')
            with open(os.path.join(d, f"evil{i}.vmx"), "w") as f:
                f.write(f'displayName = "evil{i}"\nmemsize = "64"\nscsi0:0.fileName = "evil{i}.vmdk"\n')
            msg = self.refused({"path": os.path.join(d, f"evil{i}.vmx")}, text="names an extent outside its directory")
            self.assertNotIn("TOPSECRET", msg)
        # A parent (snapshot chain) is refused too.
        with open(os.path.join(d, "child.vmdk"), "w") as f:
            f.write('# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=2\ncreateType="monolithicFlat"\n'
                    'parentFileNameHint="/etc/passwd"\nRW 2048 FLAT "child-flat.vmdk" 0\n')
        with open(os.path.join(d, "child-flat.vmdk"), "wb") as f:
            f.write(b"\0" * (1 << 20))
        with open(os.path.join(d, "child.vmx"), "w") as f:
            f.write('displayName = "child"\nmemsize = "64"\nscsi0:0.fileName = "child.vmdk"\n')
        self.refused({"path": os.path.join(d, "child.vmx")}, text="parent")
        # A VMX naming a disk outside.
        with open(os.path.join(d, "far.vmx"), "w") as f:
            f.write('displayName = "far"\nmemsize = "64"\nscsi0:0.fileName = "../../outside/flat.bin.vmdk"\n')
        self.refused({"path": os.path.join(d, "far.vmx")}, text="not a plain file name")

    def test_qcow2_with_a_backing_file(self):
        child = os.path.join(self.root, "child.qcow2")
        qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", "/etc/passwd", child, "1M")
        self.refused({"path": child}, text="backing file")

    def test_malformed_ovf(self):
        d = os.path.join(self.root, "ovf-bad")
        os.makedirs(d)
        cases = {
            "broken.ovf": "<Envelope><References>",
            "entity.ovf": '<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><Envelope>&x;</Envelope>',
            "nosys.ovf": '<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>',
            "escape.ovf": OVF.format(href="../../outside/x.vmdk", size=10, capacity=1 << 20, name="esc", cpus=1, memory=64),
        }
        for name, text in cases.items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
            with self.subTest(name=name):
                msg = self.refused({"path": os.path.join(d, name)})
                self.assertNotIn("root:", msg)

    def test_ova_with_sizes_that_do_not_match(self):
        disk = os.path.join(self.tmp, "size-disk1.vmdk")
        qemu_img("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", self.raw, disk)
        ova = make_ova(os.path.join(self.root, "size.ova"), disk, name="sizevm", size=12345)
        self.refused({"path": ova}, text="not the 12345 the descriptor declares")
        ova = make_ova(os.path.join(self.root, "cap.ova"), disk, name="capvm", capacity=1 << 20)
        self.refused({"path": ova}, text="more than the ovf:capacity")

    def test_request_validation_and_rights(self):
        good = os.path.join(self.root, "known.qcow2")
        self.refused({"path": good, "host": "t1", "group": "Lab"}, field="group")
        self.refused({"path": good, "cpus": 0}, field="cpus", status=422)
        self.refused({"path": good, "host": "nohost"}, field="host", status=422)
        self.refused({"path": good, "name": "bad name!"}, field="name")
        self.refused({"path": good, "bogus": 1}, field="bogus")
        st, b = self.d.request("POST", "/api/v1/vms/import", {"path": good}, token=self.viewer)
        self.assertEqual(st, 403, b)
        audit = self.d.ok("GET", "/api/v1/audit?limit=20")["items"]
        self.assertTrue(any(a["user_name"] == "viewer" and a["result"] == "denied" for a in audit), audit[:3])

    # -- export --
    def test_export_validation(self):
        vm = self.stopped_vm("exp-src")
        path = f"/api/v1/vms/{vm['id']}/export"
        for body, field, status in (({"to": self.root, "format": "zip"}, "format", 400),
                                    ({"to": self.outside}, "to", 400),
                                    ({"to": "rel"}, "to", 400),
                                    ({"to": os.path.join(self.root, "none")}, "to", 400),
                                    ({}, "to", 400)):
            st, b = self.d.request("POST", path, body)
            self.assertEqual((st, b["error"]["field"]), (status, field), b)
        os.symlink(self.outside, os.path.join(self.root, "out-link"))
        st, b = self.d.request("POST", path, {"to": os.path.join(self.root, "out-link")})
        self.assertEqual((st, b["error"]["field"]), (400, "to"), b)
        open(os.path.join(self.root, "exp-src.ova"), "w").close()
        st, b = self.d.request("POST", path, {"to": self.root, "format": "ova"})
        self.assertEqual((st, b["error"]["field"]), (409, "to"), b)
        st, b = self.d.request("POST", path, {"to": self.root}, token=self.viewer)
        self.assertEqual(st, 403, b)
        j = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/start")["job"]
        self.d.wait_job(j["id"])
        st, b = self.d.request("POST", path, {"to": self.root, "format": "qcow2"})
        self.assertEqual((st, b["error"]["field"]), (409, "vm"), b)
        self.assertIn("stop it before exporting", b["error"]["message"])
        self.delete("exp-src")

    # -- clone --
    def test_clone_full_and_linked_on_test_hosts(self):
        src = self.stopped_vm("cl-src")
        r = self.d.ok("POST", f"/api/v1/vms/{src['id']}/clone", {"name": "cl-full", "host": "t2"})
        self.assertEqual(r["vm"]["state"], "creating")
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        full = self.d.find("vms", "cl-full")
        self.assertEqual((full["host_name"], full["cpus"], full["memory_mib"]), ("t2", 2, 256))
        self.assertNotEqual(full["uuid"], src["uuid"])
        r = self.d.ok("POST", f"/api/v1/vms/{src['id']}/clone", {"name": "cl-linked", "linked": True})
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        self.assertTrue(job["result"]["linked"])
        self.assertEqual(self.d.find("vms", "cl-linked")["host_name"], "t1")
        for n in ("cl-full", "cl-linked", "cl-src"):
            self.delete(n)

    def test_clone_keeps_every_nic_with_new_macs(self):
        """A clone has the source's hardware: every NIC on its network with
        its model (libvirt gives each a new MAC), CPUs and memory; before,
        only the first network NIC was kept."""
        r = self.d.ok("POST", "/api/v1/networks", {"name": "clnet", "group": "Lab", "mode": "isolated"})
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        src = self.stopped_vm("cn-src")
        for body in ({"network": "clnet"}, {"network": "clnet", "model": "e1000"}):
            n = self.d.ok("POST", f"/api/v1/vms/{src['id']}/nics", body)
            self.assertEqual(self.d.wait_job(n["job"]["id"])["state"], "succeeded")
        def nics(vm_id):
            return self.d.ok("GET", f"/api/v1/vms/{vm_id}/nics")["items"]
        want = sorted((n["network"], n["model"]) for n in nics(src["id"]))
        self.assertEqual(len(want), len(nics(src["id"])))
        self.assertIn(("clnet", "e1000"), want)
        src_macs = {n["mac"] for n in nics(src["id"])}
        seen = set(src_macs)
        for name, body in (("cn-full", {"name": "cn-full", "host": "t2"}), ("cn-linked", {"name": "cn-linked", "linked": True})):
            job = self.d.wait_job(self.d.ok("POST", f"/api/v1/vms/{src['id']}/clone", body)["job"]["id"])
            self.assertEqual(job["state"], "succeeded", job)
            vm = self.d.find("vms", name)
            self.assertEqual((vm["cpus"], vm["memory_mib"]), (2, 256))
            got = nics(vm["id"])
            self.assertEqual(sorted((n["network"], n["model"]) for n in got), want, name)
            macs = {n["mac"] for n in got}
            self.assertEqual(len(macs), len(got), name)
            self.assertFalse(macs & seen, f"{name} has a MAC another VM has: {macs & seen}")
            seen |= macs
        for n in ("cn-full", "cn-linked", "cn-src"):
            self.delete(n)
        nid = self.d.ok("GET", "/api/v1/networks?name=clnet")["items"][0]["id"]
        self.d.wait_job(self.d.ok("DELETE", f"/api/v1/networks/{nid}")["job"]["id"])

    def test_clone_refusals(self):
        src = self.stopped_vm("cr-src")
        path = f"/api/v1/vms/{src['id']}/clone"
        for body, field, status in (({"name": "cr-src"}, "name", 409),
                                    ({"name": "x", "linked": True, "host": "t2"}, "host", 400),
                                    ({"name": "x", "host": "nohost"}, "host", 422),
                                    ({}, "name", 400)):
            st, b = self.d.request("POST", path, body)
            self.assertEqual((st, b["error"]["field"]), (status, field), b)
        st, b = self.d.request("POST", "/api/v1/vms/999999/clone", {"name": "x"})
        self.assertEqual(st, 404, b)
        st, b = self.d.request("POST", path, {"name": "x"}, token=self.viewer)
        self.assertEqual(st, 403, b)
        j = self.d.ok("POST", f"/api/v1/vms/{src['id']}/actions/start")["job"]
        self.d.wait_job(j["id"])
        # Running: a linked clone is refused (its disks would be the
        # clone's backing files); a full one is copied while it runs (the
        # bytes are checked on the test bed: test_export_kvm.py).
        st, b = self.d.request("POST", path, {"name": "x", "linked": True})
        self.assertEqual((st, b["error"]["field"]), (409, "linked"), b)
        self.assertIsNone(self.d.find("vms", "x"))
        r = self.d.ok("POST", path, {"name": "cr-live"})
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        self.assertTrue(job["result"]["source_running"], job)
        self.assertEqual(self.d.find("vms", "cr-src")["state"], "running")
        self.delete("cr-live")
        self.delete("cr-src")


if __name__ == "__main__":
    unittest.main()
