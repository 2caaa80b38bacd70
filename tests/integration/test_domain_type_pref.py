"""A host's domain type preference (domain_type_preference: auto, kvm or
qemu): what a VM asking domain type auto runs as there. Set with PATCH
/hosts/{id}, `armada host set --domain-type` and armadad's
--ensure-host-domain-type; checked (400 for another word, 409 for kvm where
the host's libvirt offers no KVM: libvirt's test driver offers none) and
audited. libvirt's test driver defines any domain type, so a test host that
prefers qemu defines its auto VMs as <domain type='qemu'>."""
import os
import shutil
import subprocess
import tempfile
import unittest

from armada_harness import ARMADA, ARMADAD, Armadad


class PrefCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Armadad(["--ensure-host", "e1=test:///default", "--ensure-host-domain-type", "qemu"]).start()
        cls.d.token = cls.d.login()
        cls.n = 0

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def host(self):
        type(self).n += 1
        name = f"dp{self.n}"
        h, job = self.d.add_host(name, self.d.test_node_uri(name))
        self.assertEqual(job["state"], "succeeded", job)
        self.addCleanup(self.d.request, "DELETE", f"/api/v1/hosts/{h['id']}?force=true")
        return self.d.ok("GET", f"/api/v1/hosts/{h['id']}")

    def patch(self, h, body, token=None):
        return self.d.request("PATCH", f"/api/v1/hosts/{h['id']}", body, token=token)

    def audits(self, name):
        return [a for a in self.d.ok("GET", "/api/v1/audit?limit=200")["items"]
                if a["action"] == "host.update" and a.get("object_name") == name]


class TestApi(PrefCase):
    def test_default_is_auto_and_set_values_are_shown_and_audited(self):
        h = self.host()
        self.assertEqual(h["domain_type_preference"], "auto")
        self.assertEqual(h["domain_type"], "test")
        st, b = self.patch(h, {"domain_type_preference": "qemu"})
        self.assertEqual(st, 200, b)
        self.assertEqual(b["domain_type_preference"], "qemu")
        self.assertEqual(self.d.find("hosts", h["name"])["domain_type_preference"], "qemu")   # in lists too
        self.assertTrue(any("domain_type_preference=qemu" in (a.get("detail") or "") for a in self.audits(h["name"])),
                        self.audits(h["name"]))
        # absent: kept, whatever else changes
        st, b = self.patch(h, {"max_parallel_starts": 2})
        self.assertEqual((st, b["domain_type_preference"]), (200, "qemu"))
        st, b = self.patch(h, {"domain_type_preference": "auto"})
        self.assertEqual((st, b["domain_type_preference"]), (200, "auto"))

    def test_bad_values_are_refused_naming_the_field_and_change_nothing(self):
        h = self.host()
        self.assertEqual(self.patch(h, {"domain_type_preference": "qemu"})[0], 200)
        n_audits = len(self.audits(h["name"]))
        for body, status in (({"domain_type_preference": "xen"}, 400), ({"domain_type_preference": 1}, 400),
                             ({"domain_type_preference": "KVM"}, 400), ({"domain_type_preference": None}, 400),
                             # the test driver offers no KVM: refused at the setting
                             ({"domain_type_preference": "kvm", "max_parallel_starts": 3}, 409)):
            st, b = self.patch(h, body)
            self.assertEqual(st, status, (body, b))
            self.assertEqual(b["error"]["field"], "domain_type_preference", b)
        st, b = self.patch(h, {"domain_type_preference": "kvm"})
        self.assertIn("offers no KVM", b["error"]["message"])
        got = self.d.ok("GET", f"/api/v1/hosts/{h['id']}")
        self.assertEqual((got["domain_type_preference"], got["max_parallel_starts"]), ("qemu", None))
        self.assertEqual(len(self.audits(h["name"])), n_audits)

    def test_only_administrators_change_it(self):
        h = self.host()
        self.d.ok("POST", "/api/v1/users", {"name": "dp-ro", "password": "dp-ro-password", "role": "read-only"})
        tok = self.d.login("dp-ro", "dp-ro-password")
        self.assertEqual(self.patch(h, {"domain_type_preference": "qemu"}, token=tok)[0], 403)
        self.assertEqual(self.d.ok("GET", f"/api/v1/hosts/{h['id']}")["domain_type_preference"], "auto")

    def test_an_auto_vm_on_a_host_preferring_qemu_is_defined_as_qemu(self):
        h = self.host()
        before = self.d.create_vm("dp-before", h["name"])
        self.assertEqual(self.d.vm(before["id"])["domain_type"], "test")
        self.assertEqual(self.patch(h, {"domain_type_preference": "qemu"})[0], 200)
        vm = self.d.create_vm("dp-auto", h["name"])                # domain_type absent: auto
        self.assertEqual(self.d.vm(vm["id"])["domain_type"], "qemu")
        vm2 = self.d.create_vm("dp-auto2", h["name"], domain_type="auto")
        self.assertEqual(self.d.vm(vm2["id"])["domain_type"], "qemu")
        # what was handed to libvirt, not only Armada's row: the job's
        # result and step say so
        r = self.d.ok("POST", "/api/v1/vms", {"name": "dp-auto3", "host": h["name"], "cpus": 1, "memory_mib": 64, "force": True})
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(job["result"]["domain_type"], "qemu")
        self.assertTrue(any("as QEMU TCG" in s["name"] for s in job["steps"]), job["steps"])

    def test_ensure_host_domain_type_applies_at_start(self):
        e1 = self.d.find("hosts", "e1")
        self.assertEqual(e1["domain_type_preference"], "qemu")
        audit = [a for a in self.audits("e1") if "--ensure-host-domain-type" in (a.get("detail") or "")]
        self.assertEqual(len(audit), 1, self.audits("e1"))


class TestCli(PrefCase):
    def test_cli_sets_and_shows_it(self):
        home = tempfile.mkdtemp(prefix="armada-dp-home-")
        self.addCleanup(shutil.rmtree, home, True)
        env = dict(os.environ, HOME=home, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, ASAN_OPTIONS="detect_leaks=0")

        def cli(*args):
            return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=60)
        h = self.host()
        r = cli("host", "set", h["name"], "--domain-type", "qemu")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("domain type preference qemu", r.stdout)
        self.assertRegex(cli("host", "show", h["name"]).stdout, r"Domain type preference:\s+qemu")
        r = cli("host", "set", h["name"], "--domain-type", "kvm")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("offers no KVM", r.stderr)
        r = cli("host", "set", h["name"], "--domain-type", "tcg")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("domain_type_preference", r.stderr)
        self.assertEqual(self.d.find("hosts", h["name"])["domain_type_preference"], "qemu")


class TestEnsureHostRestart(unittest.TestCase):
    """--ensure-host-domain-type changes a host registered before only when
    given: a restart without it keeps the host's own setting."""

    def test_restart(self):
        d = Armadad(["--ensure-host", "r1=test:///default"]).start()
        self.addCleanup(d.cleanup)
        d.token = d.login()
        self.assertEqual(d.find("hosts", "r1")["domain_type_preference"], "auto")
        d.stop()
        d.args += ["--ensure-host-domain-type", "qemu"]
        d.start()
        d.token = d.login()
        self.assertEqual(d.find("hosts", "r1")["domain_type_preference"], "qemu")
        d.ok("PATCH", f"/api/v1/hosts/{d.find('hosts', 'r1')['id']}", {"domain_type_preference": "auto"})
        d.stop()
        d.args = [a for a in d.args if a not in ("--ensure-host-domain-type", "qemu")]
        d.start()
        d.token = d.login()
        self.assertEqual(d.find("hosts", "r1")["domain_type_preference"], "auto")
        r = subprocess.run([ARMADAD, "--ensure-host-domain-type", "tcg"], capture_output=True, text=True, timeout=30,
                           env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("'ensure-host-domain-type' must be auto, kvm or qemu", r.stderr)


if __name__ == "__main__":
    unittest.main()
