"""System tests: who a hypervisor is and whose VMs are whose, on a real
libvirtd of the test bed.

- One libvirtd registered under a second name: the same URI is refused at
  once (409); another URI that reaches the same libvirtd is refused when it
  first connects (its host UUID is already registered), and a running VM on
  it keeps running through many refresh rounds.
- Two armadads managing one libvirtd: each marks its own domains, shows the
  other's as foreign (read-only) and never touches them."""
import os
import re
import unittest

from armada_harness import Armadad, wait_until
from testbed import Testbed, skip_reason

ARMADA_XMLNS = "https://armada.example/xmlns/vm/1"


def domstate(bed, host, name):
    r = bed.virsh(host, "domstate", name, check=False)
    return r.strip() if r else None


def refresh_rounds(d, host, n=4):
    """Waits until armadad d has refreshed host n more times."""
    seen = [d.find("hosts", host)["last_seen_at"]]

    def advanced():
        now = d.find("hosts", host)["last_seen_at"]
        if now != seen[-1]:
            seen.append(now)
        return len(seen) > n
    wait_until(advanced, 60, what=f"{n} refresh rounds of host '{host}'")


class TestIdentityOnTestbed(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.bed = Testbed(1)
        cls.bed.up()
        cls.daemons = []
        try:
            cls.h = cls.bed.host("h1")
            cls.a = cls.armadad()
            cls.b = cls.armadad()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def armadad(cls):
        d = Armadad()
        cls.daemons.append(d)
        d.start()
        d.token = d.login()
        host, job = d.add_host("h1", cls.h.uri)
        assert job["state"] == "succeeded", job
        return d

    @classmethod
    def tearDownClass(cls):
        try:
            for d in getattr(cls, "daemons", []):
                d.cleanup()
        finally:
            cls.bed.down(check=False)
            left = cls.bed.leftovers()
            assert not left, f"the test bed left {left}"

    def test_1_a_hypervisor_is_registered_once(self):
        d = self.a
        host = d.find("hosts", "h1")
        with open(os.path.join(self.bed.state_dir, "h1", "host_uuid")) as f:
            self.assertEqual(host["hv_uuid"], f.read().strip())
        vm = d.create_vm("id-keep", "h1", memory_mib=64, start=True)
        self.assertEqual(domstate(self.bed, "h1", "id-keep"), "running")
        before = d.count("hosts")
        # The same URI, also with the default port spelt out: refused at once.
        addr = self.h.addr
        for uri in (self.h.uri, f"qemu+tcp://{addr}:16509/system"):
            st, b = d.request("POST", "/api/v1/hosts", {"name": "h1-again", "uri": uri})
            self.assertEqual(st, 409, (uri, b))
            self.assertIn("Host 'h1' already has the URI", b["error"]["message"])
        # Another URI to the same libvirtd: the job that connects refuses it.
        st, b = d.request("POST", "/api/v1/hosts", {"name": "h1-alias", "uri": f"qemu+tcp://{addr}/system?no_verify=1"})
        self.assertEqual(st, 202, b)
        job = d.wait_job(b["job"]["id"])
        self.assertEqual(job["state"], "failed", job)
        self.assertIn(f"is the same hypervisor (host UUID {host['hv_uuid']}) as host 'h1', already registered", job["error"])
        self.assertIsNone(d.find("hosts", "h1-alias"))
        self.assertEqual(d.count("hosts"), before)
        refresh_rounds(d, "h1")
        self.assertEqual(domstate(self.bed, "h1", "id-keep"), "running")
        self.assertEqual(d.vm(vm["id"])["state"], "running")
        kinds = {e["kind"] for e in d.ok("GET", "/api/v1/events?limit=500")["items"] if e["object_name"] == "id-keep"}
        self.assertFalse(kinds & {"vm.stale-copy", "vm.moved", "vm.missing"}, kinds)
        d.vm_action(vm["id"], "kill")

    def test_2_two_installations_on_one_libvirtd(self):
        va = self.a.create_vm("mgr-a-vm", "h1", memory_mib=64, start=True)
        vb = self.b.create_vm("mgr-b-vm", "h1", memory_mib=64, start=True)
        # Each domain carries its installation's marker.
        marks = {}
        for name in ("mgr-a-vm", "mgr-b-vm"):
            xml = self.bed.virsh("h1", "dumpxml", name)
            self.assertIn(ARMADA_XMLNS, xml)
            m = re.search(r"installation=['\"]([0-9a-f-]{36})['\"]", xml)
            self.assertIsNotNone(m, xml)
            marks[name] = m.group(1)
        self.assertNotEqual(marks["mgr-a-vm"], marks["mgr-b-vm"])

        for d, own, other in ((self.a, "mgr-a-vm", "mgr-b-vm"), (self.b, "mgr-b-vm", "mgr-a-vm")):
            seen = wait_until(lambda: d.find("vms", other), 30, what=f"{other} to show in the other armadad")
            refresh_rounds(d, "h1")
            self.assertEqual(d.find("vms", own)["origin"], "created")
            seen = d.find("vms", other)
            self.assertEqual(seen["origin"], "foreign", seen)
            self.assertEqual(seen["state"], "running")
            st, b = d.request("POST", f"/api/v1/vms/{seen['id']}/actions/kill")
            self.assertEqual(st, 409, b)
            self.assertIn("belongs to another Armada installation", b["error"]["message"])
            st, b = d.request("DELETE", f"/api/v1/vms/{seen['id']}")
            self.assertEqual(st, 409, b)
        for name in ("mgr-a-vm", "mgr-b-vm"):
            self.assertEqual(domstate(self.bed, "h1", name), "running")
        self.assertEqual(self.a.vm(va["id"])["state"], "running")
        self.assertEqual(self.b.vm(vb["id"])["state"], "running")


if __name__ == "__main__":
    unittest.main()
