"""Import of VMs with several network cards (issue 12) against a real armadad
with libvirt test-driver hosts: an OVF and a VMX with two cards import both,
each on the network the request maps it to ("networks" as a list in the
descriptor's order, or as {descriptor network: network}; "network" for every
card as before); the cards are recorded with fresh MACs; placement puts the
VM where its networks stand; bad mappings are a 4xx naming "networks" and
record nothing. The domain XML of several cards is checked in
tests/unit/test_hv.c (test_build_more_nics)."""
import os
import shutil
import subprocess
import tempfile
import unittest

from armada_harness import ARMADA, Armadad
from test_export import qemu_img

OVF2 = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" ovf:version="1.0">
  <References><File ovf:id="file1" ovf:href="two-disk1.vmdk"/></References>
  <DiskSection><Info>disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="8388608" ovf:capacityAllocationUnits="byte"/>
  </DiskSection>
  <VirtualSystem ovf:id="twonic"><Info>vm</Info><Name>twonic</Name>
    <VirtualHardwareSection><Info>hw</Info>
      <Item><rasd:ElementName>cpu</rasd:ElementName><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ElementName>mem</rasd:ElementName><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>64</rasd:VirtualQuantity></Item>
      <Item><rasd:ElementName>disk1</rasd:ElementName><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
      <Item><rasd:Connection>VM Network</rasd:Connection><rasd:ElementName>eth0</rasd:ElementName><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType></Item>
      <Item><rasd:Connection>Backend</rasd:Connection><rasd:ElementName>eth1</rasd:ElementName><rasd:InstanceID>5</rasd:InstanceID><rasd:ResourceType>10</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""

# ethernet1 first: the cards follow their numbers, not the file's order.
VMX2 = ('.encoding = "UTF-8"\nconfig.version = "8"\ndisplayName = "vmxtwo"\nnumvcpus = "1"\nmemsize = "64"\n'
        'scsi0.present = "TRUE"\nscsi0:0.present = "TRUE"\nscsi0:0.fileName = "vmxtwo.vmdk"\n'
        'ethernet1.present = "TRUE"\nethernet1.networkName = "Backend"\n'
        'ethernet0.present = "TRUE"\nethernet0.networkName = "VM Network"\n')


class ImportNicsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("qemu-img"):
            raise unittest.SkipTest("qemu-img is not installed")
        cls.tmp = tempfile.mkdtemp(prefix="armada-import-nics-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.root = os.path.join(cls.tmp, "exports")
        os.makedirs(cls.root)
        raw = os.path.join(cls.tmp, "d.raw")
        with open(raw, "wb") as f:
            f.truncate(8 << 20)
        cls.ovf_dir = os.path.join(cls.root, "ovf2")
        cls.vmx_dir = os.path.join(cls.root, "vmx2")
        os.makedirs(cls.ovf_dir)
        os.makedirs(cls.vmx_dir)
        qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, os.path.join(cls.ovf_dir, "two-disk1.vmdk"))
        qemu_img("convert", "-f", "raw", "-O", "vmdk", raw, os.path.join(cls.vmx_dir, "vmxtwo.vmdk"))
        with open(os.path.join(cls.ovf_dir, "two.ovf"), "w") as f:
            f.write(OVF2)
        with open(os.path.join(cls.vmx_dir, "vmxtwo.vmx"), "w") as f:
            f.write(VMX2)
        cls.ovf = os.path.join(cls.ovf_dir, "two.ovf")
        cls.vmx = os.path.join(cls.vmx_dir, "vmxtwo.vmx")
        cls.d = Armadad(args=["--export-root", cls.root])
        cls.addClassCleanup(cls.d.cleanup)          # also when setUpClass fails midway
        cls.d.start()
        cls.d.token = cls.d.login()
        d = cls.d
        d.ok("POST", "/api/v1/host-groups", {"path": "Imp"})
        # i2 first: the lower id, which placement prefers among equals
        for name in ("i2", "i1"):
            _, job = d.add_host(name, d.test_node_uri(name), group="Imp")
            assert job["state"] == "succeeded", job
        for net in ("front", "back"):
            r = d.ok("POST", "/api/v1/networks", {"name": net, "host": "i1", "mode": "isolated"})
            assert d.wait_job(r["job"]["id"])["state"] == "succeeded"

    def vm_names(self):
        return {v["name"] for v in self.d.ok("GET", "/api/v1/vms")["items"]}

    def imported(self, body):
        st, b = self.d.request("POST", "/api/v1/vms/import", body)
        self.assertEqual(st, 202, b)
        vm = b["vm"]
        self.addCleanup(lambda: self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"]))
        job = self.d.wait_job(b["job"]["id"], timeout=120)
        self.assertEqual(job["state"], "succeeded", job)
        nics = self.d.ok("GET", f"/api/v1/vms/{vm['id']}/nics")["items"]
        return b, self.d.find("vms", vm["name"]), nics

    def refused(self, body, status, text=None):
        before = self.vm_names()
        st, b = self.d.request("POST", "/api/v1/vms/import", body)
        self.assertEqual((st, b["error"]["field"]), (status, "networks"), b)
        if text:
            self.assertIn(text, b["error"]["message"])
        self.assertEqual(self.vm_names(), before, "nothing recorded")

    def test_ovf_with_two_cards_as_a_list(self):
        b, vm, nics = self.imported({"path": self.ovf, "name": "ovf-list", "group": "Imp", "networks": ["front", "back"]})
        self.assertEqual([n["network"] for n in b["source"]["nics"]], ["VM Network", "Backend"])
        self.assertEqual([n["network"] for n in nics], ["front", "back"])
        self.assertEqual(len({n["mac"] for n in nics}), 2)
        self.assertTrue(all(n["mac"].startswith("52:54:00:") for n in nics), nics)
        # placed where both networks stand, though i2 comes first otherwise
        self.assertEqual(vm["host_name"], "i1")

    def test_vmx_with_two_cards_as_a_mapping(self):
        b, vm, nics = self.imported({"path": self.vmx, "host": "i1", "networks": {"Backend": "back", "VM Network": "front"}})
        self.assertEqual(vm["name"], "vmxtwo")
        self.assertEqual([n["network"] for n in b["source"]["nics"]], ["VM Network", "Backend"])
        self.assertEqual([n["network"] for n in nics], ["front", "back"])

    def test_one_network_for_every_card_as_before(self):
        b, vm, nics = self.imported({"path": self.ovf, "name": "ovf-one", "host": "i1", "network": "front"})
        self.assertEqual([n["network"] for n in nics], ["front", "front"])
        # a partial mapping, the rest on "network"
        b, vm, nics = self.imported({"path": self.vmx, "name": "vmx-part", "host": "i1", "network": "front",
                                     "networks": {"Backend": "back"}})
        self.assertEqual([n["network"] for n in nics], ["front", "back"])
        # no network: no card, as before
        b, vm, nics = self.imported({"path": self.ovf, "name": "ovf-none", "host": "i2"})
        self.assertEqual(nics, [])

    def test_a_named_host_without_the_networks_is_refused(self):
        before = self.vm_names()
        st, b = self.d.request("POST", "/api/v1/vms/import", {"path": self.ovf, "name": "ovf-i2", "host": "i2",
                                                              "networks": ["front", "back"]})
        self.assertEqual((st, b["error"]["field"]), (422, "host"), b)
        self.assertIn("network 'front' missing on host", b["error"]["message"])
        self.assertEqual(self.vm_names(), before)

    def test_bad_mappings_name_the_field_and_record_nothing(self):
        self.refused({"path": self.ovf, "name": "x1", "networks": ["front"]}, 422, "has 2 network cards")
        self.refused({"path": self.ovf, "name": "x1", "networks": ["front", "back", "front"]}, 422)
        self.refused({"path": self.ovf, "name": "x1", "networks": ["front", "bad name!"]}, 400, "Item 2")
        self.refused({"path": self.ovf, "name": "x1", "networks": ["front", 7]}, 400)
        self.refused({"path": self.ovf, "name": "x1", "networks": ["front", "back"], "network": "front"}, 400, "not both")
        self.refused({"path": self.ovf, "name": "x1", "networks": {"VM Network": "front"}}, 422, "'Backend'")
        self.refused({"path": self.ovf, "name": "x1", "networks": {"Nope": "front", "Backend": "back"}}, 422, "'Nope'")
        self.refused({"path": self.ovf, "name": "x1", "networks": {"Backend": "bad name!"}}, 400)
        self.refused({"path": self.ovf, "name": "x1", "networks": "front"}, 400)
        self.refused({"path": self.ovf, "name": "x1", "networks": []}, 422)

    def test_cli_network_repeated_and_mapped(self):
        env = dict(os.environ, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, HOME=self.tmp, ASAN_OPTIONS="detect_leaks=0")

        def cli(*args):
            return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=120)

        def cleanup(name):
            vm = self.d.find("vms", name)
            if vm:
                self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])

        for name, nets, want in (("cli-list", ["--network", "front", "--network", "back"], ["front", "back"]),
                                 ("cli-map", ["--network", "Backend=back", "--network", "front"], ["front", "back"])):
            self.addCleanup(cleanup, name)
            r = cli("vm", "import", self.ovf, "--name", name, "--host", "i1", *nets, "--wait")
            self.assertEqual(r.returncode, 0, r.stderr)
            vm = self.d.find("vms", name)
            self.assertEqual([n["network"] for n in self.d.ok("GET", f"/api/v1/vms/{vm['id']}/nics")["items"]], want)
        r = cli("vm", "import", self.ovf, "--name", "cli-bad", "--network", "=back")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("SRC=NET", r.stderr)


if __name__ == "__main__":
    unittest.main()
