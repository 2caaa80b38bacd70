"""Networks, NICs, storage pools and volumes (issue 12) against a real armadad
with libvirt test-driver hosts (test:///<node>.xml, each its own fake
hypervisor): a group network stands on every host of the group, also on a
host that joins later; bad input is a 4xx naming the field; only
administrators change networks and pools; a network a VM uses cannot be
deleted; MACs are unique across the estate; pools show in /metrics."""
import os
import subprocess
import unittest

from armada_harness import ARMADA, Armadad, wait_until


class NetworkTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Armadad().start()
        cls.d.token = cls.d.login()
        d = cls.d
        d.ok("POST", "/api/v1/host-groups", {"path": "Net/Rack1"})
        d.ok("POST", "/api/v1/host-groups", {"path": "Other"})
        cls.h1, _ = d.add_host("n1", d.test_node_uri("n1"), group="Net/Rack1")
        cls.h2, _ = d.add_host("n2", d.test_node_uri("n2"), group="Net")
        cls.h3, _ = d.add_host("o1", d.test_node_uri("o1"), group="Other")
        d.ok("POST", "/api/v1/users", {"name": "ro", "password": "ro-password", "role": "read-only"})
        d.ok("POST", "/api/v1/users", {"name": "deleg", "password": "deleg-password", "role": "delegated-administrator",
                                       "scopes": ["Net"]})
        cls.ro = d.login("ro", "ro-password")
        cls.deleg = d.login("deleg", "deleg-password")

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    # -- helpers --
    def refused(self, method, path, body, status, field=None, token=None, contains=None):
        st, b = self.d.request(method, path, body, token=token)
        self.assertEqual(st, status, b)
        if field is not None:
            self.assertEqual(b["error"]["field"], field, b)
        if contains is not None:
            self.assertIn(contains, b["error"]["message"], b)
        return b

    def create_network(self, body, ok=True):
        r = self.d.ok("POST", "/api/v1/networks", body)
        job = self.d.wait_job(r["job"]["id"])
        if ok:
            self.assertEqual(job["state"], "succeeded", job)
        return r["network"], job

    def network(self, name):
        items = self.d.ok("GET", f"/api/v1/networks?name={name}")["items"]
        return items[0] if items else None

    def delete_network(self, name):
        n = self.network(name)
        if n:
            r = self.d.ok("DELETE", f"/api/v1/networks/{n['id']}")
            return self.d.wait_job(r["job"]["id"])
        return None

    # -- networks --
    def test_group_network_stands_on_every_host_of_the_group(self):
        net, job = self.create_network({"name": "lan1", "group": "Net", "mode": "nat", "subnet": "10.77.1.0/24"})
        self.addCleanup(self.delete_network, "lan1")
        self.assertEqual(job["result"]["active"], 2, job)
        n = self.network("lan1")
        states = {h["host_name"]: h["state"] for h in n["hosts"]}
        self.assertEqual(states, {"n1": "active", "n2": "active"})   # the subgroup's host too, not o1
        self.assertEqual(n["mode"], "nat")
        self.assertEqual(n["subnet"], "10.77.1.0/24")
        self.assertEqual(n["group_path"], "Net")
        # again by id
        self.assertEqual(self.d.ok("GET", f"/api/v1/networks/{n['id']}")["name"], "lan1")
        self.assertTrue(any(a["action"] == "network.create" and a["object_name"] == "lan1"
                            for a in self.d.ok("GET", "/api/v1/audit")["items"]))

    def test_host_that_joins_later_gets_the_network(self):
        self.create_network({"name": "late", "group": "Net", "mode": "isolated"})
        self.addCleanup(self.delete_network, "late")
        h4, _ = self.d.add_host("n4", self.d.test_node_uri("n4"), group="Net/Rack1")
        self.addCleanup(self.d.request, "DELETE", f"/api/v1/hosts/{h4['id']}?force=true")

        def on_n4():
            hosts = {h["host_name"]: h["state"] for h in self.network("late")["hosts"]}
            return hosts.get("n4") == "active"
        wait_until(on_n4, 30, what="network 'late' to stand on the new host")

    def test_network_of_one_host(self):
        self.create_network({"name": "solo", "host": "o1", "mode": "isolated"})
        self.addCleanup(self.delete_network, "solo")
        n = self.network("solo")
        self.assertEqual([(h["host_name"], h["state"]) for h in n["hosts"]], [("o1", "active")])
        self.assertEqual(n["host_name"], "o1")

    def test_bad_input_names_the_field(self):
        p = "/api/v1/networks"
        self.refused("POST", p, {"name": "x1", "group": "Net", "mode": "tunnel"}, 400, "mode")
        self.refused("POST", p, {"name": "x1", "group": "Net", "mode": "nat", "vlan": 10}, 400, "vlan")
        self.refused("POST", p, {"name": "x1", "group": "Net", "mode": "bridge", "bridge": "br0", "vlan": 5000}, 422, "vlan")
        self.refused("POST", p, {"name": "x1", "group": "Net", "mode": "bridge"}, 400, "bridge")
        self.refused("POST", p, {"name": "x1", "group": "Net", "mode": "bridge", "bridge": "br0; reboot"}, 400, "bridge")
        self.refused("POST", p, {"name": "x1", "group": "Net", "mode": "nat", "subnet": "10.1.2.5/24"}, 400, "subnet")
        self.refused("POST", p, {"name": "x1", "group": "Net", "mode": "nat", "subnet": "300.1.2.0/24"}, 400, "subnet")
        self.refused("POST", p, {"name": "x1", "group": "Net", "host": "n1", "mode": "nat"}, 400, "group")
        self.refused("POST", p, {"name": "x1", "mode": "nat"}, 400, "group")
        self.refused("POST", p, {"name": "x1", "group": "Nowhere", "mode": "nat"}, 422, "group")
        self.refused("POST", p, {"name": "x1", "host": "nohost", "mode": "nat"}, 422, "host")
        self.refused("POST", p, {"name": "x1", "host": "n1", "mode": "nat", "default": True}, 400, "default")
        self.refused("POST", p, {"name": "<x>", "group": "Net", "mode": "nat"}, 400, "name")
        self.refused("POST", p, {"name": "x1", "group": "Net", "mode": "nat", "colour": "red"}, 400)
        self.assertIsNone(self.network("x1"))   # nothing half-made

    def test_name_taken_is_409(self):
        self.create_network({"name": "dup", "group": "Net", "mode": "isolated"})
        self.addCleanup(self.delete_network, "dup")
        self.refused("POST", "/api/v1/networks", {"name": "dup", "host": "o1", "mode": "isolated"}, 409, "name")

    def test_only_administrators_change_networks(self):
        for tok in (self.ro, self.deleg):
            self.refused("POST", "/api/v1/networks", {"name": "nope", "group": "Net", "mode": "nat"}, 403, token=tok)
        self.assertIsNone(self.network("nope"))
        self.create_network({"name": "guarded", "group": "Net", "mode": "isolated"})
        self.addCleanup(self.delete_network, "guarded")
        nid = self.network("guarded")["id"]
        self.refused("DELETE", f"/api/v1/networks/{nid}", None, 403, token=self.deleg)
        # the delegated administrator of Net sees it; the read-only user too
        for tok in (self.ro, self.deleg):
            names = [n["name"] for n in self.d.ok("GET", "/api/v1/networks", token=tok)["items"]]
            self.assertIn("guarded", names)
        denied = [a for a in self.d.ok("GET", "/api/v1/audit")["items"] if a["result"] == "denied" and a["object_kind"] == "network"]
        self.assertTrue(denied)

    def test_delegated_admin_does_not_see_other_groups_networks(self):
        self.create_network({"name": "elsewhere", "host": "o1", "mode": "isolated"})
        self.addCleanup(self.delete_network, "elsewhere")
        names = [n["name"] for n in self.d.ok("GET", "/api/v1/networks", token=self.deleg)["items"]]
        self.assertNotIn("elsewhere", names)
        nid = self.network("elsewhere")["id"]
        self.refused("GET", f"/api/v1/networks/{nid}", None, 404, token=self.deleg)
        b = self.refused("DELETE", f"/api/v1/networks/{nid}", None, 404, token=self.deleg)
        self.assertNotIn("elsewhere", b["error"]["message"])

    # -- NICs --
    def make_vm(self, name, host):
        vm = self.d.create_vm(name, host)
        self.addCleanup(lambda: self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"]))
        return vm

    def add_nic(self, vm_id, body, state="succeeded"):
        r = self.d.ok("POST", f"/api/v1/vms/{vm_id}/nics", body)
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], state, job)
        return r["nic"], job

    def test_nic_add_remove_and_delete_in_use(self):
        self.create_network({"name": "vmnet", "group": "Net", "mode": "nat", "subnet": "10.77.2.0/24"})
        vm = self.make_vm("nicvm1", "n1")
        nic, job = self.add_nic(vm["id"], {"network": "vmnet"})
        self.assertRegex(nic["mac"], r"^52:54:00(:[0-9a-f]{2}){3}$")
        self.assertEqual(nic["model"], "virtio")
        nics = self.d.ok("GET", f"/api/v1/vms/{vm['id']}/nics")["items"]
        self.assertEqual([(n["mac"], n["network"]) for n in nics], [(nic["mac"], "vmnet")])
        # the network is in use: 409 naming the VM, and it stays
        nid = self.network("vmnet")["id"]
        b = self.refused("DELETE", f"/api/v1/networks/{nid}", None, 409, contains="nicvm1")
        self.assertIsNotNone(self.network("vmnet"))
        # the same MAC on another VM: 409
        vm2 = self.make_vm("nicvm2", "n2")
        self.refused("POST", f"/api/v1/vms/{vm2['id']}/nics", {"network": "vmnet", "mac": nic["mac"].upper()}, 409, "mac")
        # remove it, then the network can go
        r = self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}/nics/{nic['mac']}")
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        self.assertEqual(self.d.ok("GET", f"/api/v1/vms/{vm['id']}/nics")["items"], [])
        self.assertEqual(self.delete_network("vmnet")["state"], "succeeded")
        self.assertIsNone(self.network("vmnet"))

    def test_nic_bad_input(self):
        self.create_network({"name": "rack", "host": "n1", "mode": "isolated"})
        self.addCleanup(self.delete_network, "rack")
        vm = self.make_vm("nicvm3", "n2")
        p = f"/api/v1/vms/{vm['id']}/nics"
        self.refused("POST", p, {"network": "rack", "mac": "01:00:5e:00:00:01"}, 400, "mac")   # multicast
        self.refused("POST", p, {"network": "rack", "mac": "zz"}, 400, "mac")
        self.refused("POST", p, {"network": "rack", "model": "ne2k"}, 400, "model")
        self.refused("POST", p, {}, 400, "network")
        self.refused("POST", p, {"network": "rack"}, 422, "network", contains="n2")   # stands on n1 only
        self.refused("DELETE", f"{p}/52:54:00:00:00:99", None, 404, "mac")
        self.refused("POST", "/api/v1/vms/99999/nics", {"network": "rack"}, 404)
        self.refused("POST", p, {"network": "rack"}, 403, token=self.ro)
        self.assertEqual(self.d.ok("GET", p)["items"], [])

    def test_nic_on_a_network_the_host_lacks_fails_and_frees_the_mac(self):
        vm = self.make_vm("nicvm4", "n1")
        nic, job = self.add_nic(vm["id"], {"network": "nosuchnet", "mac": "52:54:00:aa:bb:cc"}, state="failed")
        self.assertIn("nosuchnet", job["error"])
        self.assertEqual(self.d.ok("GET", f"/api/v1/vms/{vm['id']}/nics")["items"], [])
        # the MAC is free again
        self.create_network({"name": "okn", "host": "n1", "mode": "isolated"})
        self.addCleanup(self.delete_network, "okn")
        nic, _ = self.add_nic(vm["id"], {"network": "okn", "mac": "52:54:00:AA:BB:CC"})
        self.assertEqual(nic["mac"], "52:54:00:aa:bb:cc")
        self.addCleanup(lambda: self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}/nics/{nic['mac']}")["job"]["id"]))

    def create_vm_job(self, name, host, **kw):
        body = {"name": name, "host": host, "cpus": 1, "memory_mib": 64, "force": True}
        body.update(kw)
        r = self.d.ok("POST", "/api/v1/vms", body)
        self.addCleanup(lambda: self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{r['vm']['id']}")["job"]["id"]))
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        return r["vm"], job

    def nics_of(self, vm_id):
        return [(n["network"], n["mac"]) for n in self.d.ok("GET", f"/api/v1/vms/{vm_id}/nics")["items"]]

    def test_blank_vm_gets_a_nic_on_the_groups_default_network(self):
        self.create_network({"name": "netdefault", "group": "Net", "mode": "nat", "subnet": "10.77.3.0/24", "default": True})
        self.addCleanup(self.delete_network, "netdefault")
        self.assertTrue(self.network("netdefault")["is_default"])
        vm, job = self.create_vm_job("dflvm1", "n1")              # n1 is in Net/Rack1: Net's default applies
        self.assertEqual(job["result"]["nic"]["network"], "netdefault", job)
        self.assertEqual(self.nics_of(vm["id"]), [("netdefault", job["result"]["nic"]["mac"])])
        # --no-nic
        vm2, job2 = self.create_vm_job("dflvm2", "n1", nic=False)
        self.assertNotIn("nic", job2["result"] or {})
        self.assertEqual(self.nics_of(vm2["id"]), [])
        # a host outside the group, without a libvirt network "default": no NIC
        vm3, job3 = self.create_vm_job("dflvm3", "o1")
        self.assertEqual(self.nics_of(vm3["id"]), [])

    def test_blank_vm_falls_back_to_the_hosts_libvirt_default_network(self):
        self.create_network({"name": "default", "host": "o1", "mode": "isolated"})
        self.addCleanup(self.delete_network, "default")
        vm, job = self.create_vm_job("dflvm4", "o1")
        self.assertEqual(job["result"]["nic"]["network"], "default", job)
        self.assertEqual([n for n, _ in self.nics_of(vm["id"])], ["default"])

    # -- pools and volumes --
    def pools(self, host, token=None):
        return {p["name"]: p for p in self.d.ok("GET", f"/api/v1/pools?host={host}", token=token)["items"]}

    def test_pools_listed_with_space(self):
        pools = self.pools("n1")
        self.assertIn("armada", pools)
        p = pools["armada"]
        self.assertTrue(p["armada"])
        self.assertTrue(p["active"])
        for k in ("capacity_bytes", "allocation_bytes", "available_bytes"):
            self.assertIsInstance(p[k], int)
        self.assertGreater(p["capacity_bytes"], 0)
        self.refused("GET", "/api/v1/pools?host=nohost", None, 404, "host")
        # a delegated administrator of Net sees n1's pools, not o1's
        hosts = {p["host_name"] for p in self.d.ok("GET", "/api/v1/pools", token=self.deleg)["items"]}
        self.assertIn("n1", hosts)
        self.assertNotIn("o1", hosts)

    def test_pool_add_remove(self):
        hid = self.h1["id"]
        path = os.path.join(self.d.dir, "pool-extra")
        r = self.d.ok("POST", f"/api/v1/hosts/{hid}/pools", {"name": "extra", "type": "dir", "path": path}, expect=(201,))
        self.assertEqual(r["name"], "extra")
        self.assertIn("extra", self.pools("n1"))
        vols = self.d.ok("GET", f"/api/v1/hosts/{hid}/pools/extra/volumes")["items"]
        self.assertEqual(vols, [])
        self.refused("POST", f"/api/v1/hosts/{hid}/pools", {"name": "extra", "type": "dir", "path": path}, 409, "name")
        self.d.ok("DELETE", f"/api/v1/hosts/{hid}/pools/extra", expect=(204,))
        self.assertNotIn("extra", self.pools("n1"))
        self.assertTrue(any(a["action"] == "pool.remove" for a in self.d.ok("GET", "/api/v1/audit")["items"]))

    def test_pool_bad_input_and_rights(self):
        hid = self.h1["id"]
        p = f"/api/v1/hosts/{hid}/pools"
        self.refused("POST", p, {"name": "p1", "type": "dir", "path": "/etc/pools"}, 400, "path")
        self.refused("POST", p, {"name": "p1", "type": "dir", "path": "relative"}, 400, "path")
        self.refused("POST", p, {"name": "p1", "type": "dir"}, 400, "path")
        self.refused("POST", p, {"name": "p1", "type": "netfs", "path": "/srv/nfs1", "source_path": "/export"}, 400, "source_host")
        self.refused("POST", p, {"name": "p1", "type": "netfs", "path": "/srv/nfs1", "source_host": "nas"}, 400, "source_path")
        self.refused("POST", p, {"name": "p1", "type": "netfs", "path": "/srv/nfs1", "source_host": "-oProxy", "source_path": "/e"},
                     400, "source_host")
        self.refused("POST", p, {"name": "p1", "type": "iscsi", "source_host": "san"}, 400, "source_name")
        self.refused("POST", p, {"name": "p1", "type": "logical", "source_name": "vg0", "path": "/srv/x"}, 400, "path")
        self.refused("POST", p, {"name": "p1", "type": "zfs"}, 400, "type")
        self.refused("POST", p, {"name": "p1", "type": "dir", "path": "/srv/p1"}, 403, token=self.deleg)
        self.refused("POST", p, {"name": "p1", "type": "dir", "path": "/srv/p1"}, 403, token=self.ro)
        self.refused("POST", "/api/v1/hosts/99999/pools", {"name": "p1", "type": "dir", "path": "/srv/p1"}, 404)
        self.assertNotIn("p1", self.pools("n1"))
        # the host's own pool stays
        self.refused("DELETE", f"{p}/armada", None, 409, "pool")
        self.refused("DELETE", f"{p}/nosuch", None, 404, "pool")

    def test_volumes_list_and_delete(self):
        vm = self.make_vm("volvm", "n2")
        self.assertTrue(vm)
        hid = self.h2["id"]
        vols = self.d.ok("GET", f"/api/v1/hosts/{hid}/pools/armada/volumes")["items"]
        self.assertIsInstance(vols, list)
        for v in vols:
            self.assertIn("capacity_bytes", v)
        in_use = [v for v in vols if v.get("vm")]
        for v in in_use:
            self.refused("DELETE", f"/api/v1/hosts/{hid}/pools/armada/volumes/{v['name']}", None, 409, "volume")
        self.refused("DELETE", f"/api/v1/hosts/{hid}/pools/armada/volumes/nosuch.qcow2", None, 404, "volume")
        self.refused("GET", f"/api/v1/hosts/{hid}/pools/nosuch/volumes", None, 404, "pool")

    def test_pools_in_metrics(self):
        st, body = self.d.request("GET", "/api/v1/metrics")
        self.assertEqual(st, 200)
        text = body if isinstance(body, str) else body.decode() if isinstance(body, bytes) else str(body)
        for fam in ("armada_pool_capacity_bytes", "armada_pool_allocation_bytes", "armada_pool_available_bytes"):
            self.assertIn(f"# TYPE {fam} gauge", text)
        self.assertRegex(text, r'armada_pool_capacity_bytes\{[^}]*host="n1"[^}]*pool="armada"[^}]*\} \d')

    # -- the command line --
    def cli(self, *args, ok=True):
        env = dict(os.environ, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, ASAN_OPTIONS="detect_leaks=0",
                   HOME=self.d.dir)
        r = subprocess.run([ARMADA, "--wait", *args], capture_output=True, text=True, env=env, timeout=60)
        if ok:
            self.assertEqual(r.returncode, 0, f"armada {' '.join(args)}: {r.stderr}")
        return r

    def test_cli_network_nic_pool_volume(self):
        self.cli("network", "create", "clinet", "--group", "Net", "--mode", "isolated", "--subnet", "10.77.9.0/24")
        self.addCleanup(self.delete_network, "clinet")
        out = self.cli("network", "list").stdout
        self.assertRegex(out, r"clinet\s+isolated\s+group Net")
        self.assertIn("n1 active", out)
        r = self.cli("network", "create", "clibad", "--group", "Net", "--mode", "nat", "--vlan", "7", ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("vlan", r.stderr)
        self.cli("network", "create", "clibad", "--mode", "nat", ok=False)
        vm = self.make_vm("clivm", "n1")
        self.cli("vm", "nic", "add", "clivm", "--network", "clinet", "--mac", "52:54:00:0c:11:01")
        self.assertIn("52:54:00:0c:11:01", self.cli("vm", "nic", "list", "clivm").stdout)
        r = self.cli("network", "delete", "clinet", ok=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("clivm", r.stderr)
        self.cli("vm", "nic", "remove", "clivm", "52:54:00:0c:11:01")
        self.assertNotIn("52:54:00", self.cli("vm", "nic", "list", "clivm").stdout)
        self.assertTrue(vm)
        out = self.cli("pool", "list", "--host", "n1").stdout
        self.assertIn("armada (armada)", out)
        path = os.path.join(self.d.dir, "cli-pool")
        self.cli("pool", "add", "n1", "clipool", "--type", "dir", "--path", path)
        self.assertIn("clipool", self.cli("pool", "list").stdout)
        self.cli("volume", "list", "n1", "clipool")
        self.cli("pool", "remove", "n1", "clipool")
        self.assertNotIn("clipool", self.cli("pool", "list").stdout)


if __name__ == "__main__":
    unittest.main()
