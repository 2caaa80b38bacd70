"""Networks and NICs on real QEMU through Armada, on the namespace test bed.

The bed's hosts are network namespaces, each with one veth on the bed's
bridge. For guests on different hosts to share a layer-2 network, the test
gives each host a second veth on the bed's bridge, enslaved to a Linux bridge
"armlan" inside the host (what a real host's uplink bridge is). Then:

- `network create lan --group Lab --mode bridge --bridge armlan` stands on
  both hosts (libvirt's `net-info` says so on each);
- a TCG guest on each host (the network guest: virtio-net, a static address
  from its kernel command line, a ping to the other once a second) gets its
  NIC through Armada (`POST /vms/{id}/nics` while stopped: into the
  definition), is started through Armada, and each pings the other across
  the hosts;
- a second NIC hotplugged through Armada into the running guest turns up in
  its /sys/class/net (the job says `live`);
- the network cannot be deleted while the guests use it (409);
- a VLAN on the hosts' Linux bridge is refused with the mechanism named.
"""
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_bed import ArmadaBed  # noqa: E402
from armada_harness import wait_until  # noqa: E402
from testbed import VirshError, skip_reason  # noqa: E402


def console(log):
    try:
        with open(log, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class TestNetworkKvm(unittest.TestCase):
    ab = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.ab = ArmadaBed(2, cluster=False).__enter__()
        try:
            cls.uplinks()
        except BaseException:
            cls.ab.__exit__(None, None, None)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.ab:
            cls.ab.__exit__(None, None, None)

    @classmethod
    def uplinks(cls):
        """A second veth per host on the bed's bridge, enslaved to "armlan"
        inside the host. Both ends go with the host's namespace."""
        bed = cls.ab.bed
        for h in bed.hosts:
            ns, k = bed.netns(h.name), h.name[1:]
            outer = f"vtb{bed.id}n{k}"
            for argv in (["ip", "link", "add", outer, "type", "veth", "peer", "name", "lan0", "netns", ns],
                         ["ip", "link", "set", outer, "master", f"armtb{bed.id}"],
                         ["ip", "link", "set", outer, "up"],
                         ["ip", "netns", "exec", ns, "ip", "link", "add", "armlan", "type", "bridge", "stp_state", "0"],
                         ["ip", "netns", "exec", ns, "ip", "link", "set", "lan0", "master", "armlan"],
                         ["ip", "netns", "exec", ns, "ip", "link", "set", "lan0", "up"],
                         ["ip", "netns", "exec", ns, "ip", "link", "set", "armlan", "up"]):
                subprocess.run(argv, check=True, capture_output=True, timeout=30)

    # -- helpers --
    def job(self, method, path, body=None, timeout=300):
        r = self.ab.d.ok(method, path, body)
        return r, self.ab.d.wait_job(r["job"]["id"], timeout=timeout)

    def guest(self, name, host, addr, peer):
        """The network guest defined (not started) on host behind Armada's
        back; returns (its VM once discovered, console log)."""
        from guest import GuestUnavailable
        from netguest import build_net_guest, net_guest_xml
        try:
            kernel, initrd = build_net_guest()
        except GuestUnavailable as e:
            self.skipTest(f"no network guest: {e}")
        ab = self.ab
        log = os.path.join(ab.bed.shared_dir, f"{name}.log")
        path = os.path.join(ab.bed.shared_dir, f"{name}.xml")
        with open(path, "w") as f:
            f.write(net_guest_xml(name, kernel, initrd, addr, peer, log))
        self.addCleanup(lambda: ab.bed.virsh(host, "undefine", name, check=False))
        self.addCleanup(lambda: ab.bed.virsh(host, "destroy", name, check=False))
        ab.bed.virsh(host, "define", path)

        def found():
            items = ab.d.ok("GET", f"/api/v1/vms?name={name}")["items"]
            return items[0] if items else None
        return wait_until(found, 30, interval=0.2, what=f"armadad to discover {name}"), log

    # -- tests --
    def test_1_vlan_on_a_linux_bridge_is_refused_with_the_mechanism(self):
        r, job = self.job("POST", "/api/v1/networks", {"name": "tagged", "host": "h1", "mode": "bridge", "bridge": "armlan",
                                                       "vlan": 42})
        self.assertEqual(job["state"], "failed", job)
        self.assertRegex(job["error"], r"VLAN 42.*(Linux bridge|cannot describe)", job)
        self.assertEqual(self.ab.d.ok("GET", "/api/v1/networks?name=tagged")["items"], [], "nothing half-made")
        with self.assertRaises(VirshError):
            self.ab.bed.virsh("h1", "net-info", "tagged")

    def test_2_guests_on_two_hosts_reach_each_other(self):
        ab, d = self.ab, self.ab.d
        _, job = self.job("POST", "/api/v1/networks", {"name": "lan", "group": "All Hosts", "mode": "bridge", "bridge": "armlan"})
        self.assertEqual(job["state"], "succeeded", job)
        for h in ab.bed.hosts:
            info = ab.bed.virsh(h.name, "net-info", "lan")
            self.assertRegex(info, r"Active:\s+yes", info)
            self.assertRegex(info, r"Bridge:\s+armlan", info)
        net = d.ok("GET", "/api/v1/networks?name=lan")["items"][0]
        self.assertEqual({h["host_name"]: h["state"] for h in net["hosts"]}, {"h1": "active", "h2": "active"})

        prefix = ab.bed.hosts[0].addr.rsplit(".", 1)[0]
        a1, a2 = f"{prefix}.101", f"{prefix}.102"
        vm1, log1 = self.guest("ping1", "h1", a1 + "/24", a2)
        vm2, log2 = self.guest("ping2", "h2", a2 + "/24", a1)
        nics = {}
        for vm in (vm1, vm2):
            r, job = self.job("POST", f"/api/v1/vms/{vm['id']}/nics", {"network": "lan"})
            self.assertEqual(job["state"], "succeeded", job)
            self.assertFalse(job["result"]["live"], "a stopped VM gets it in its definition")
            nics[vm["name"]] = r["nic"]["mac"]
        xml = ab.bed.virsh("h1", "dumpxml", "ping1", "--inactive")
        self.assertIn(f"<mac address='{nics['ping1']}'/>", xml)
        self.assertIn("<source network='lan'/>", xml)
        for vm in (vm1, vm2):
            self.assertEqual(d.vm_action(vm["id"], "start")["state"], "succeeded")
        self.addCleanup(lambda: [d.request("POST", f"/api/v1/vms/{v['id']}/actions/kill") for v in (vm1, vm2)])
        wait_until(lambda: f"ping {a2} ok" in console(log1) and f"ping {a1} ok" in console(log2), 240, interval=1,
                   what="the guests on h1 and h2 to ping each other over network 'lan'")

        # hotplug a second card into the running guest on h1
        r, job = self.job("POST", f"/api/v1/vms/{vm1['id']}/nics", {"network": "lan", "model": "virtio"})
        self.assertEqual(job["state"], "succeeded", job)
        self.assertTrue(job["result"]["live"], job)
        wait_until(lambda: re.search(r"nics eth0 eth1 ", console(log1)), 120, interval=1,
                   what="the hotplugged card to show in the guest's /sys/class/net")
        self.assertIn(r["nic"]["mac"], ab.bed.virsh("h1", "dumpxml", "ping1", "--inactive"), "and for the next boot")

        # in use: the network stays
        st, b = d.request("DELETE", f"/api/v1/networks/{net['id']}")
        self.assertEqual(st, 409, b)
        self.assertIn("ping1", b["error"]["message"])


if __name__ == "__main__":
    unittest.main()
