"""Placement honours the networks of a VM's cards (issue 12): a host where a
network the VM uses is missing, or defined but not active, gets 0 stars with
the reason "network 'x' missing on host" / "... not active on host", in the
ratings, for a migration (named target or automatic) and for a deploy from a
template that names the network. Hosts are libvirt test-driver hosts
(test:///<file>.xml, each its own fake hypervisor)."""
import os
import unittest

from armada_harness import Armadad, wait_until
from test_library import qcow2
from test_placement import PlacementTestCase


class PlaceNetworkTest(PlacementTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = cls.d
        d.ok("POST", "/api/v1/host-groups", {"path": "PN"})
        cls.pa, _ = d.add_host("pn-a", d.test_node_uri("pn-a"), group="PN")
        cls.pb, _ = d.add_host("pn-b", d.test_node_uri("pn-b"), group="PN")
        # a network of pn-a only
        r = d.ok("POST", "/api/v1/networks", {"name": "pnet", "host": "pn-a", "mode": "isolated"})
        assert d.wait_job(r["job"]["id"])["state"] == "succeeded"
        # the test driver adds cards only to a stopped VM
        cls.vm = d.create_vm("pn-vm", "pn-a", nic=False, start=False)
        r = d.ok("POST", f"/api/v1/vms/{cls.vm['id']}/nics", {"network": "pnet"})
        job = d.wait_job(r["job"]["id"])
        assert job["state"] == "succeeded", job
        assert d.vm_action(cls.vm["id"], "start")["state"] == "succeeded"

    def set_state(self, host_id, state):
        with self.db() as db:
            db.execute("UPDATE network_host SET state = ? WHERE host_id = ? AND network_id ="
                       " (SELECT id FROM network WHERE name = 'pnet')", (state, host_id))

    def test_ratings_of_the_vm_give_zero_stars_where_its_network_is_missing(self):
        r = self.by_name(self.ratings(name="pn-vm", cpus=1, memory_mib=64, group="PN"))
        self.assertEqual(r["pn-b"]["stars"], 0, r)
        self.assertEqual(r["pn-b"]["reason"], "network 'pnet' missing on host")
        self.assertGreater(r["pn-a"]["stars"], 0, r)
        self.assertEqual(r["pn-a"]["reason"], "")
        # a new VM (no cards) is not bound by it
        r = self.by_name(self.ratings(name="pn-new", cpus=1, memory_mib=64, group="PN"))
        self.assertGreater(r["pn-b"]["stars"], 0, r)

    def rated_after(self, state):
        """The ratings of pn-vm right after pn-a's record of pnet says state
        (a full refresh of pn-a sets the network up again and records
        "active": the record is written again until a rating reads it)."""
        def rate():
            self.set_state(self.pa["id"], state)
            r = self.by_name(self.ratings(name="pn-vm", cpus=1, memory_mib=64, group="PN"))
            return r if r["pn-a"]["stars"] == 0 else None
        return wait_until(rate, 30, what=f"a rating that reads pnet {state} on pn-a")

    def test_a_network_not_active_on_the_host(self):
        self.addCleanup(self.set_state, self.pa["id"], "active")
        r = self.rated_after("failed")
        self.assertEqual(r["pn-a"]["reason"], "network 'pnet' not active on host")
        # recorded "missing" (the host was unreachable): not there
        r = self.rated_after("missing")
        self.assertEqual(r["pn-a"]["reason"], "network 'pnet' missing on host")

    def test_migration_to_a_host_without_the_network_is_refused(self):
        r = self.d.ok("POST", f"/api/v1/vms/{self.vm['id']}/migrate", {"to": "pn-b"})
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("host 'pn-b' cannot take it: network 'pnet' missing on host", job["error"])
        # automatic: no host is left (pn-a is the source)
        r = self.d.ok("POST", f"/api/v1/vms/{self.vm['id']}/migrate", {})
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("host 'pn-b': network 'pnet' missing on host", job["error"])
        self.assertEqual(self.d.vm(self.vm["id"])["host_id"], self.pa["id"])
        with self.db() as db:
            self.assertEqual(db.execute("SELECT count(*) FROM placement_reservation").fetchone()[0], 0)

    def test_deploy_of_a_template_on_the_network_goes_where_it_stands(self):
        share = os.path.join(self.xml_dir, "pnshare")
        os.makedirs(share)
        qcow2(os.path.join(share, "pnbase.qcow2"), 1 << 20)
        r = self.d.ok("POST", "/api/v1/library/shares", {"path": share})
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        tpl = self.d.ok("POST", "/api/v1/templates", {"name": "pn-tpl", "image": "pnbase.qcow2", "cpus": 1,
                                                       "memory_mib": 64, "network": "pnet"})
        # pn-b is emptier (pn-vm runs on pn-a), yet only pn-a has the network
        path = f"/api/v1/templates/{tpl['id']}/deploy"
        r = self.d.ok("POST", path, {"name": "pn-dep", "group": "PN", "start": False})
        vm = r["vms"][0]
        self.addCleanup(lambda: self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"]))
        self.d.wait_job(r["jobs"][0]["id"])
        self.assertEqual(self.d.vm(vm["id"])["host_id"], self.pa["id"])
        # named onto pn-b: refused, naming the network, and nothing recorded
        st, b = self.d.request("POST", path, {"name": "pn-dep2", "host": "pn-b", "start": False})
        self.assertEqual((st, b["error"]["field"]), (422, "host"), b)
        self.assertIn("network 'pnet' missing on host", b["error"]["message"])
        self.assertIsNone(self.d.find("vms", "pn-dep2"))


if __name__ == "__main__":
    unittest.main()
