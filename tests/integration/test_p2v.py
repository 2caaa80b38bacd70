"""P2V (issue 12) against a real armadad with libvirt test-driver hosts and a
"physical server" that is sshd on loopback with throwaway keys
(tests/lib/p2v_server.py): the API's shape, validation, scoping and 4xx, the
read-only probe, host key pinning and the job on a test host (which keeps no
data: the bytes are checked on the test bed, tests/system/test_p2v_kvm.py).
Nothing half-made: a refused request records no VM."""
import os
import pathlib
import shutil
import subprocess
import tempfile
import unittest

from armada_harness import ARMADA, Armadad
from p2v_server import SshServer, free_port, skip_reason


class P2vOffTest(unittest.TestCase):
    """Without --p2v-ssh-key P2V is off: 503 naming the flag."""
    def test_off_without_a_key(self):
        d = Armadad().start()
        try:
            d.token = d.login()
            st, b = d.request("POST", "/api/v1/p2v", {"server": "srv1", "ssh": "root@192.0.2.1"})
            self.assertEqual(st, 503, b)
            self.assertEqual(b["error"]["field"], "ssh")
            self.assertIn("--p2v-ssh-key", b["error"]["message"])
        finally:
            d.cleanup()


class P2vTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.tmp = tempfile.mkdtemp(prefix="armada-p2v-it-")
        cls.srv = SshServer(cls.tmp).__enter__()
        cls.d = None
        try:
            cls.d = Armadad(args=["--p2v-ssh-key", cls.srv.client_key]).start()
            cls.d.token = cls.d.login()
            _, job = cls.d.add_host("t1", cls.d.test_node_uri("t1", cpus=16, memory_mib=65536))
            assert job["state"] == "succeeded", job
            cls.d.ok("POST", "/api/v1/users", {"name": "oper", "password": "password-o", "role": "read-only"})
            cls.oper = cls.d.login("oper", "password-o")
            # A block device the server shows: any loop device there is (a
            # sysfs size and [ -b ] are all the probe reads).
            cls.image = os.path.join(cls.tmp, "disk.img")
            with open(cls.image, "wb") as f:
                f.truncate(8 << 20)
            cls.loop = subprocess.run(["losetup", "-f", "--show", cls.image], capture_output=True, text=True,
                                      check=True).stdout.strip()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if getattr(cls, "loop", None):
                subprocess.run(["losetup", "-d", cls.loop], capture_output=True)
            if cls.d:
                cls.d.cleanup()
        finally:
            cls.srv.__exit__(None, None, None)
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def body(self, **kw):
        b = {"server": "srv1", "ssh": f"root@{self.srv.addr}", "port": self.srv.port, "disks": [self.loop],
             "host_key_fingerprint": self.srv.fingerprint, "host": "t1"}
        b.update(kw)
        return {k: v for k, v in b.items() if v is not None}

    def no_vm(self, name="srv1"):
        self.assertIsNone(self.d.find("vms", name))

    def refused(self, status, field, **kw):
        st, b = self.d.request("POST", "/api/v1/p2v", self.body(**kw))
        self.assertEqual(st, status, b)
        self.assertEqual(b["error"].get("field"), field, b)
        self.no_vm(kw.get("name") or "srv1")
        return b["error"]

    # -- validation, before anything is asked of the server --
    def test_bad_fields(self):
        b = self.refused(400, "ssh", ssh="root@-oProxyCommand=x")
        self.assertIn("user@address", b["message"])
        self.refused(400, "ssh", ssh="root;reboot@host")
        for bad in ("/etc/passwd", "/dev/sda; reboot", "/dev/../etc/shadow", "/dev/SDA", "/dev/", "/dev/sda$(id)"):
            b = self.refused(400, "disks", disks=[bad])
            self.assertIn("Disk", b["message"])
        self.refused(400, "disks", disks=[self.loop, self.loop])
        self.refused(400, "disks", disks="/dev/sda")
        self.refused(400, "host_key_fingerprint", host_key_fingerprint="MD5:aa:bb")
        self.refused(400, "host_key_fingerprint", host_key_fingerprint=None)   # and no --p2v-known-hosts
        self.refused(422, "port", port=70000)
        self.refused(400, "group", group="Lab")
        self.refused(400, "server", server=None)
        self.refused(400, "domain_type", domain_type="xen")

    def test_non_admin_is_refused_and_audited(self):
        st, b = self.d.request("POST", "/api/v1/p2v", self.body(), token=self.oper)
        self.assertEqual(st, 403, b)
        self.no_vm()
        audit = self.d.ok("GET", "/api/v1/audit?limit=20")["items"]
        self.assertTrue(any(a.get("result") == "denied" and a.get("user_name") == "oper" for a in audit), audit[:3])

    # -- the server refuses or is not what it claims --
    def test_ssh_refused(self):
        b = self.refused(422, "ssh", port=free_port())
        self.assertIn(self.srv.addr, b["message"])

    def test_wrong_key_refused(self):
        # A fingerprint of another key: nothing of the server is trusted.
        other = os.path.join(self.tmp, "other")
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other], check=True)
        fp = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", other + ".pub"], capture_output=True, text=True,
                            check=True).stdout.split()[1]
        b = self.refused(422, "host_key_fingerprint", host_key_fingerprint=fp)
        self.assertIn("fingerprint", b["message"])

    def test_not_a_block_device(self):
        b = self.refused(400, "disks", disks=["/dev/null"])
        self.assertIn("not a block device", b["message"])
        b = self.refused(400, "disks", disks=["/dev/armada-no-such-disk"])
        self.assertIn("not a block device", b["message"])

    # -- accepted --
    def test_convert_onto_a_test_host(self):
        r = self.d.ok("POST", "/api/v1/p2v", self.body(name="p2v-a", cpus=1, memory_mib=128), expect=(202,))
        src = r["source"]
        self.assertEqual(src["disks"], [{"path": self.loop, "size": 8 << 20}])
        self.assertEqual((src["cpus"], src["memory_mib"], src["assessed"]), (1, 128, False))
        self.assertTrue(src["nics"])    # loopback's server shows its NICs (lo left out)
        self.assertNotIn("lo", [n["name"] for n in src["nics"]])
        self.assertEqual(r["vm"]["state"], "creating")
        job = self.d.wait_job(r["job"]["id"], timeout=60)
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(job["result"]["disk_bus"], "sata")
        self.assertIn("virt-v2v", job["result"]["drivers"])
        vm = self.d.find("vms", "p2v-a")
        self.assertEqual((vm["cpus"], vm["memory_mib"], vm["state"]), (1, 128, "stopped"))
        self.assertEqual([d["target"] for d in vm["disks"]], ["sda"])
        audit = self.d.ok("GET", "/api/v1/audit?limit=50")["items"]
        self.assertTrue(any(a.get("action") == "vm.p2v" and a.get("object_name") == "p2v-a" for a in audit))
        self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])

    def test_probe_figures_and_assessed_server_address(self):
        # The server's own figures without an assessment ...
        r = self.d.ok("POST", "/api/v1/p2v", self.body(name="p2v-b"), expect=(202,))
        self.assertEqual(r["source"]["cpus"], os.cpu_count())
        meminfo = pathlib.Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
        self.assertEqual(r["source"]["memory_mib"], int(meminfo) // 1024)
        self.assertFalse(r["source"]["assessed"])
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        vm = self.d.find("vms", "p2v-b")
        self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])
        # ... and an assessed server: SSH goes to its node_exporter's host
        # when no 'ssh' is given.
        a = self.d.ok("POST", "/api/v1/assessments", {"name": "assessed1", "node_exporter": f"http://{self.srv.addr}:9/metrics"})
        try:
            r = self.d.ok("POST", "/api/v1/p2v", self.body(server="assessed1", ssh=None, memory_mib=64), expect=(202,))
            self.assertTrue(r["source"]["assessed"])
            self.assertEqual((r["source"]["user"], r["source"]["address"]), ("root", self.srv.addr))
            self.assertEqual(r["vm"]["name"], "assessed1")
            self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
            vm = self.d.find("vms", "assessed1")
            self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])
        finally:
            self.d.ok("DELETE", f"/api/v1/assessments/{a['id']}")

    def test_known_hosts_file_and_cli(self):
        d = Armadad(args=["--p2v-ssh-key", self.srv.client_key, "--p2v-known-hosts", self.srv.known_hosts()]).start()
        try:
            d.token = d.login()
            _, job = d.add_host("k1", d.test_node_uri("k1"))
            self.assertEqual(job["state"], "succeeded")
            env = dict(os.environ, ARMADA_URL=d.url, ARMADA_TOKEN=d.token)
            out = subprocess.run([ARMADA, "p2v", "srv9", "--ssh", f"root@{self.srv.addr}", "--port", str(self.srv.port),
                                  "--disk", self.loop, "--memory", "64", "--cpus", "1", "--wait"],
                                 capture_output=True, text=True, env=env, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr + out.stdout)
            vm = d.find("vms", "srv9")
            self.assertEqual((vm["memory_mib"], vm["state"]), (64, "stopped"))
            bad = subprocess.run([ARMADA, "p2v", "srv8", "--ssh", f"root@{self.srv.addr}", "--port", str(self.srv.port),
                                  "--disk", "/dev/null"], capture_output=True, text=True, env=env, timeout=60)
            self.assertNotEqual(bad.returncode, 0)
            self.assertIn("not a block device", bad.stderr)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
