"""Clone, export and import on the namespace test bed (real libvirtd + QEMU):

- a guest writes a marker to its disk; the VM is exported as an OVA (OVF 1.0
  descriptor, SHA-256 manifest, streamOptimized VMDK) and imported onto the
  other host, where the guest boots and reads the same marker back; the same
  through the qcow2-directory format (disks compared with qemu-img compare);
- VMDK, VHD and VHDX images made with qemu-img from a known disk, and a
  VMX+VMDK pair, are imported and their disks compared byte for byte;
- a full clone on the other host holds the same bytes, a linked clone is an
  overlay over the source's disk, both with new UUIDs and MACs;
- a running VM is cloned on its host and onto the other (a point-in-time
  copy of its disks): it keeps running, and both clones read its marker.

The guest is a 140-byte boot sector (assembly below, bytes in GUEST_MBR):
it reads sector 1 of the boot disk; when it holds "AMK1" it records 'R' at
physical 0x7f00 (read back), else it writes "AMK1" and 8 hex digits of the
TSC there and records 'W'; the sector stays at 0x8000. The test reads both
through the QEMU monitor (xp)."""
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_harness import wait_until  # noqa: E402
from bedcase import ArmadaBedCase  # noqa: E402

# .code16: cli; ds=es=ss=0; sp=0x7c00; [0x7f01]=dl; [0x7f00]='B';
# int13 ah=02 read CHS 0/0/2 -> 0x8000; "AMK1"? [0x7f00]='R' : (write
# "AMK1"+hex(rdtsc eax) with int13 ah=03, [0x7f00]='W'); on CF 'F'; hlt loop.
GUEST_MBR = bytes.fromhex(
    "fa31c08ed88ec08ed0bc007cfb8816017fc606007f42b80102b9020030f6bb0080cd13725e813e0080414d750f813e02804b317507c606007f52"
    "eb4cc7060080414dc70602804b310f31bf0480b9080066c1c00488c380e30f80c33080fb39760380c307881d47e2e7b80103b9020030f68a16"
    "017fbb0080cd137207c606007f57eb05c606007f46faf4ebfc").ljust(510, b"\0") + b"\x55\xaa"


def run(*argv):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{argv}: {r.stderr}"
    return r.stdout


def identical(a, b, fmt_a=None):
    argv = ["qemu-img", "compare", "-U"] + (["-f", fmt_a] if fmt_a else []) + [a, b]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return r.returncode == 0, r.stdout + r.stderr


class MbrGuestCase(ArmadaBedCase):
    """An ArmadaBedCase whose VMs boot GUEST_MBR: what it left in the
    guest's memory, read through QEMU's monitor."""

    def delete(self, name):
        vm = self.d.find("vms", name)
        if vm:
            self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"], timeout=120)

    def xp(self, host, name, addr, n):
        out = self.ab.bed.virsh(host, "qemu-monitor-command", name, "--hmp", f"xp /{n}xb {addr:#x}")
        return bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})\b(?!:)", out.split(":", 1)[1] if ":" in out else ""))[:n]

    def guest_state(self, host, name):
        """('W'|'R'|'F'|'B', the marker at 0x8000) once the guest halted."""
        def done():
            try:
                st = self.xp(host, name, 0x7f00, 1)
            except Exception:
                return None
            return st if st in (b"W", b"R", b"F") else None
        st = wait_until(done, 120, interval=0.5, what=f"the boot sector of {name} to finish")
        return st.decode(), self.xp(host, name, 0x8000, 12)


class TestExportKvm(MbrGuestCase):
    TMP_PREFIX = "armada-export-sys-"

    @classmethod
    def skip_reason(cls):
        for tool in ("qemu-img", "qemu-io"):
            if not shutil.which(tool):
                return f"'{tool}' is not installed"
        return None

    @classmethod
    def prepare(cls):
        cls.root = os.path.join(cls.tmp, "exports")
        cls.share = os.path.join(cls.tmp, "library")
        os.makedirs(cls.root)
        os.makedirs(cls.share)
        raw = os.path.join(cls.tmp, "mbr.raw")
        with open(raw, "wb") as f:
            f.truncate(32 << 20)
            f.write(GUEST_MBR)
        run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, os.path.join(cls.share, "mbr.qcow2"))
        os.unlink(raw)

    @classmethod
    def bed_args(cls):
        return {"n_hosts": 2, "extra_args": ["--export-root", cls.root]}

    @classmethod
    def bed_ready(cls):
        cls.add_share(cls.share)
        cls.tpl = cls.ab.d.ok("POST", "/api/v1/templates", {"name": "mbr", "image": os.path.join(cls.share, "mbr.qcow2"),
                                                            "memory_mib": 64, "domain_type": "qemu"})

    # -- helpers --
    def job_ok(self, reply, timeout=300):
        job = self.d.wait_job(reply["job"]["id"], timeout=timeout)
        self.assertEqual(job["state"], "succeeded", job)
        return job

    def disk(self, name):
        """The VM's vda as this machine sees it: a test-bed host's
        /var/lib/libvirt is its own directory of the bed."""
        vm = self.d.find("vms", name)
        path = {d["target"]: d["path"] for d in vm["disks"]}["vda"]
        prefix = "/var/lib/libvirt/"
        if path.startswith(prefix):
            path = os.path.join(self.ab.bed.state_dir, vm["host_name"], "lib", path[len(prefix):])
        return path

    def stop(self, name):
        vm = self.d.find("vms", name)
        self.job_ok(self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/kill"))
        wait_until(lambda: self.d.find("vms", name)["state"] == "stopped", 30, what=f"{name} to be stopped")

    marker = None

    def original(self):
        """The source VM: deployed, booted once (it writes its marker),
        stopped. Returns (vm, marker)."""
        vm = self.d.find("vms", "orig")
        if vm and type(self).marker:
            return vm, type(self).marker
        if vm:
            self.delete("orig")
        r = self.d.ok("POST", f"/api/v1/templates/{self.tpl['id']}/deploy", {"name": "orig", "host": "h1", "full_copy": True})
        for j in r["jobs"]:
            self.assertEqual(self.d.wait_job(j["id"], timeout=300)["state"], "succeeded")
        state, sector = self.guest_state("h1", "orig")
        self.assertEqual(state, "W", sector)
        self.assertEqual(sector[:4], b"AMK1")
        self.stop("orig")
        # The guest's write is on the disk.
        out = run("qemu-io", "-r", "-U", "-f", "qcow2", "-c", "read -v 512 12", self.disk("orig"))
        self.assertIn(sector.decode(), "".join(re.findall(r"\s{2}(\S+)\s*$", out, re.M)) + out)
        type(self).marker = sector
        return self.d.find("vms", "orig"), sector

    # -- tests --
    def test_1_ova_round_trip_boots_and_reads_the_marker(self):
        vm, marker = self.original()
        r = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/export", {"to": self.root, "format": "ova"})
        ova = r["path"]
        self.assertEqual(ova, os.path.join(self.root, "orig.ova"))
        self.job_ok(r)
        with tarfile.open(ova) as t:
            names = t.getnames()
            self.assertEqual(names, ["orig.ovf", "orig.mf", "orig-disk1.vmdk"])
            ovf = t.extractfile("orig.ovf").read()
            mf = t.extractfile("orig.mf").read().decode()
            vmdk = t.extractfile("orig-disk1.vmdk").read()
        self.assertIn(f"SHA256(orig.ovf)= {hashlib.sha256(ovf).hexdigest()}", mf)
        self.assertIn(f"SHA256(orig-disk1.vmdk)= {hashlib.sha256(vmdk).hexdigest()}", mf)
        text = ovf.decode()
        for s in ('ovf:version="1.0"', "<rasd:ResourceType>3</rasd:ResourceType>", "<rasd:VirtualQuantity>64</rasd:VirtualQuantity>",
                  'ovf:capacity="33554432"', "ovf:/disk/vmdisk1", "streamOptimized", 'ovf:href="orig-disk1.vmdk"'):
            self.assertIn(s, text)
        vpath = os.path.join(self.tmp, "check.vmdk")
        with open(vpath, "wb") as f:
            f.write(vmdk)
        self.assertIn("streamOptimized", run("qemu-img", "info", vpath))
        # Import onto the other host: it boots and reads the marker back.
        r = self.d.ok("POST", "/api/v1/vms/import", {"path": ova, "name": "back", "host": "h2", "start": True})
        self.assertEqual((r["source"]["cpus"], r["source"]["memory_mib"]), (1, 64))
        self.job_ok(r)
        back = self.d.find("vms", "back")
        self.assertNotEqual(back["uuid"], vm["uuid"])
        state, sector = self.guest_state("h2", "back")
        self.assertEqual((state, sector), ("R", marker))
        self.delete("back")

    def test_2_qcow2_directory_round_trip(self):
        vm, marker = self.original()
        r = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/export", {"to": self.root, "format": "qcow2"})
        self.job_ok(r)
        out = os.path.join(self.root, "orig")
        self.assertEqual(sorted(os.listdir(out)), ["orig.xml", "vda.qcow2"])
        with open(os.path.join(out, "orig.xml")) as f:
            self.assertNotIn("passwd=", f.read())
        ok, why = identical(self.disk("orig"), os.path.join(out, "vda.qcow2"))
        self.assertTrue(ok, why)
        r = self.d.ok("POST", "/api/v1/vms/import", {"path": out, "name": "back2", "host": "h1", "start": True})
        self.assertEqual(r["source"]["kind"], "libvirt")
        self.job_ok(r)
        state, sector = self.guest_state("h1", "back2")
        self.assertEqual((state, sector), ("R", marker))
        self.delete("back2")

    def test_3_foreign_images_are_converted_byte_for_byte(self):
        known = os.path.join(self.root, "known.raw")
        with open(known, "wb") as f:
            f.write(os.urandom(3 << 20) + b"\0" * (2 << 20) + os.urandom(3 << 20))
        sources = {}
        for fmt, ext in (("vmdk", "vmdk"), ("vpc", "vhd"), ("vhdx", "vhdx")):
            p = os.path.join(self.root, "known." + ext)
            run("qemu-img", "convert", "-q", "-f", "raw", "-O", fmt, known, p)
            sources[ext] = p
        vmx_dir = os.path.join(self.root, "vmx")
        os.makedirs(vmx_dir)
        run("qemu-img", "convert", "-q", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicFlat", known,
            os.path.join(vmx_dir, "app.vmdk"))
        with open(os.path.join(vmx_dir, "app.vmx"), "w") as f:
            f.write('displayName = "vmxapp"\nnumvcpus = "2"\nmemsize = "96"\nscsi0:0.present = "TRUE"\n'
                    'scsi0:0.fileName = "app.vmdk"\n')
        sources["vmx"] = os.path.join(vmx_dir, "app.vmx")
        for kind, path in sources.items():
            with self.subTest(kind=kind):
                name = "imp-" + kind
                r = self.d.ok("POST", "/api/v1/vms/import", {"path": path, "name": name, "host": "h2", "memory_mib": 64})
                steps = " | ".join(s["name"] for s in self.job_ok(r)["steps"])
                # The host sees this machine's /tmp: libvirt converts VMDK and
                # VHD there; VHDX (libvirt cannot probe it) and the VMX's
                # descriptor are converted here and streamed.
                if kind in ("vmdk", "vhd"):
                    self.assertIn("on host 'h2' (it sees the file)", steps)
                else:
                    self.assertIn("uploading", steps)
                ok, why = identical(known, self.disk(name), fmt_a="raw")
                self.assertTrue(ok, f"{kind}: {why}")
                if kind == "vmx":
                    self.assertEqual(self.d.find("vms", name)["cpus"], 2)
                self.delete(name)

    def test_4_clones(self):
        vm, marker = self.original()
        r = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/clone", {"name": "twin", "host": "h2"})
        self.job_ok(r)
        ok, why = identical(self.disk("orig"), self.disk("twin"))
        self.assertTrue(ok, why)
        r = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/clone", {"name": "thin", "linked": True})
        self.job_ok(r)
        info = run("qemu-img", "info", "-U", "--output=json", self.disk("thin"))
        host_path = {d["target"]: d["path"] for d in self.d.find("vms", "orig")["disks"]}["vda"]
        self.assertIn(f'"backing-filename": "{host_path}"', info)
        macs = {}
        for name, host in (("orig", "h1"), ("twin", "h2"), ("thin", "h1")):
            xml = self.ab.bed.virsh(host, "dumpxml", name)
            macs[name] = re.findall(r"<mac address='([^']+)'", xml)
            self.assertIn(self.d.find("vms", name)["uuid"], xml)
        self.assertEqual(len({self.d.find("vms", n)["uuid"] for n in macs}), 3)
        for n in ("twin", "thin"):
            self.assertFalse(set(macs[n]) & set(macs["orig"]), macs)
        # The linked clone boots from the source's bytes.
        self.job_ok(self.d.ok("POST", f"/api/v1/vms/{self.d.find('vms', 'thin')['id']}/actions/start"))
        self.assertEqual(self.guest_state("h1", "thin"), ("R", marker))
        for n in ("thin", "twin"):
            self.delete(n)

    def test_5_clone_of_a_running_vm(self):
        # A guest that runs (halted after writing its marker) is cloned on
        # its host and onto the other one; it keeps running, both clones
        # boot and read the marker it wrote.
        r = self.d.ok("POST", f"/api/v1/templates/{self.tpl['id']}/deploy", {"name": "live", "host": "h1", "full_copy": True})
        self.addCleanup(self.delete, "live")
        for j in r["jobs"]:
            self.assertEqual(self.d.wait_job(j["id"], timeout=300)["state"], "succeeded")
        state, marker = self.guest_state("h1", "live")
        self.assertEqual(state, "W", marker)
        vm = self.d.find("vms", "live")
        self.assertEqual(vm["state"], "running")
        for name, host in (("live-twin", "h1"), ("live-far", "h2")):
            with self.subTest(host=host):
                r = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/clone", {"name": name, "host": host})
                self.addCleanup(self.delete, name)
                job = self.job_ok(r)
                self.assertTrue(job["result"]["source_running"], job)
                self.assertIn("copied while the VM runs", " | ".join(s["name"] for s in job["steps"]))
                self.assertIn("running", self.ab.bed.virsh("h1", "domstate", "live"))
                self.assertEqual(self.d.find("vms", "live")["state"], "running")
                clone = self.d.find("vms", name)
                self.assertEqual(clone["host_name"], host)
                self.assertNotEqual(clone["uuid"], vm["uuid"])
                self.job_ok(self.d.ok("POST", f"/api/v1/vms/{clone['id']}/actions/start"))
                self.assertEqual(self.guest_state(host, name), ("R", marker))
        # Nothing was left on the source: no backup job, no checkpoint or
        # snapshot, and no temporary volume of the copy to the other host.
        self.assertEqual(self.ab.bed.virsh("h1", "snapshot-list", "live", "--name").strip(), "")
        self.assertEqual(self.ab.bed.virsh("h1", "checkpoint-list", "live", "--name").strip(), "")
        left = [f for _, _, files in os.walk(os.path.join(self.ab.bed.state_dir, "h1")) for f in files if "armada-clone-tmp" in f]
        self.assertEqual(left, [])
        # A linked clone of a running VM is refused, naming the field.
        st, b = self.d.request("POST", f"/api/v1/vms/{vm['id']}/clone", {"name": "live-thin", "linked": True})
        self.assertEqual((st, b["error"]["field"]), (409, "linked"), b)
        self.assertIsNone(self.d.find("vms", "live-thin"))


if __name__ == "__main__":
    unittest.main()
