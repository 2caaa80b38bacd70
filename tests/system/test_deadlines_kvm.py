"""System test: a libvirtd whose workers hang must not wedge Armada.

The test-bed host runs a libvirt qemu hook that blocks at the start of any
domain named wedge-*: libvirtd runs the hook synchronously while it holds
the domain, so the starting worker hangs and every call that touches the
domain list waits behind it, while libvirtd's event loop and keepalive stay
fine (the shape of the lock-manager deadlock issue 15 was filed for). The
start's job must fail at its deadline naming the host, the host must turn
not-responding with an alert, and once the hook lets go the host must be ok
again with the VM's state read from libvirt."""
import os
import unittest

from armada_harness import wait_until
from bedcase import BedCase

HOOK = """#!/bin/sh
# $1: domain name, $2: operation. Holds the start of wedge-* domains until
# the test creates the release file.
case "$1:$2" in
wedge-*:prepare)
    while [ ! -e /var/lib/libvirt/armada-release ]; do sleep 0.1; done ;;
esac
exit 0
"""

DEADLINE_S = 5


class TestWedgedLibvirtd(BedCase):
    ARGS = ["--deadline-start-s", str(DEADLINE_S), "--deadline-query-s", str(DEADLINE_S)]

    @classmethod
    def prepare_bed(cls):
        hd = os.path.join(cls.bed.state_dir, "h1")
        os.makedirs(os.path.join(hd, "etc", "hooks"), exist_ok=True)
        hook = os.path.join(hd, "etc", "hooks", "qemu")
        with open(hook, "w") as f:
            f.write(HOOK)
        os.chmod(hook, 0o755)
        cls.release = os.path.join(hd, "lib", "armada-release")
        # libvirtd looks for hook scripts when it starts.
        cls.bed.kill("h1")
        cls.bed.start("h1")

    @classmethod
    def release_bed(cls):
        # Whatever happened, let the hook go so the bed can stop.
        if getattr(cls, "release", None):
            open(cls.release, "w").close()

    def test_a_start_that_hangs_fails_at_its_deadline_and_the_host_recovers(self):
        d = self.d
        other = d.create_vm("calm", "h1", memory_mib=64, start=True)
        vm = d.create_vm("wedge-1", "h1", memory_mib=64)
        r = d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/start")
        job = d.wait_job(r["job"]["id"], timeout=DEADLINE_S + 30)
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("h1", job["error"])
        self.assertIn("did not return within", job["error"])

        wait_until(lambda: d.find("hosts", "h1")["state"] == "not-responding", 15, what="h1 to be not-responding")
        # The first call past its deadline names the reason: the start, or
        # a refresh's list of the domains that began while it hung.
        self.assertIn("starting a domain", job["error"])
        self.assertIn("did not return within", d.find("hosts", "h1")["state_reason"])
        wait_until(lambda: [a for a in d.ok("GET", "/api/v1/alerts?state=open")["items"]
                            if a["object_kind"] == "host" and a["object_name"] == "h1"
                            and a["rule_name"] == "host-not-responding"], 30,
                   what="an open not-responding alert for h1")
        # Refreshes go on failing at their deadline (the domain list waits
        # behind the hung start): the host does not flap back to ok.
        kinds = lambda: [e["kind"] for e in d.ok("GET", "/api/v1/events?limit=200")["items"] if e["object_name"] == "h1"]
        self.assertIn("host.not-responding", kinds())
        self.assertEqual(d.vm(other["id"])["state"], "unknown")
        # Armada still answers and other work goes on meanwhile.
        self.assertEqual(d.request("GET", "/api/v1/health")[0], 200)

        open(self.release, "w").close()
        wait_until(lambda: d.find("hosts", "h1")["state"] == "ok", 60, what="h1 to answer again")
        self.assertIn("host.ok", kinds())
        # The start went through once the hook let go: reconcile reads it.
        wait_until(lambda: d.vm(vm["id"])["state"] == "running", 30, what="wedge-1 to be seen running")
        wait_until(lambda: d.vm(other["id"])["state"] == "running", 30, what="calm to be seen running")
        wait_until(lambda: not [a for a in d.ok("GET", "/api/v1/alerts?state=open")["items"]
                                if a["object_name"] == "h1" and a["rule_name"] == "host-not-responding"], 30,
                   what="the not-responding alert to resolve")


if __name__ == "__main__":
    unittest.main()
