"""The armada CLI against a real armadad (libvirt test driver host): the
commands a new user types, their exit codes and what they print."""
import json
import os
import subprocess
import tempfile
import unittest

from armada_harness import ARMADA, Armadad


class TestCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Armadad(["--ensure-host", "t1=test:///default"]).start()
        cls.home = tempfile.mkdtemp(prefix="armada-cli-home-")
        cls.env = dict(os.environ, HOME=cls.home, ARMADA_URL=cls.d.url, ASAN_OPTIONS="detect_leaks=0")
        for k in ("ARMADA_TOKEN", "ARMADA_USER", "ARMADA_PASSWORD"):
            cls.env.pop(k, None)
        name, pw = cls.d.admin_password()
        r = cls.run_cli("login", "--user", name, "--password-stdin", stdin=pw + "\n")
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        subprocess.run(["rm", "-rf", cls.home])

    @classmethod
    def run_cli(cls, *args, stdin=None):
        return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=cls.env, input=stdin, timeout=120)

    def cli(self, *args):
        r = self.run_cli(*args)
        self.assertEqual(r.returncode, 0, f"armada {' '.join(args)}: {r.stderr}")
        return r.stdout

    def test_credentials_file_is_private(self):
        path = os.path.join(self.home, ".config", "armada", "credentials")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertIn("administrator", self.cli("whoami"))

    def test_groups_hosts_and_vm_lifecycle(self):
        self.cli("group", "create", "Seattle/Production")
        self.assertIn("Seattle/Production", self.cli("group", "list"))
        hosts = json.loads(self.cli("host", "list", "--output", "json"))["items"]
        self.assertEqual([h["name"] for h in hosts], ["t1"])
        # test:///default is overbooked by its built-in domain: --force.
        self.cli("vm", "create", "cli01", "--host", "t1", "--cpus", "1", "--memory", "256", "--disk", "1G", "--force", "--wait")
        for action, state in [("start", "running"), ("pause", "paused"), ("resume", "running"), ("stop", "stopped"),
                              ("start", "running"), ("kill", "stopped")]:
            out = self.cli("vm", action, "cli01", "--wait")
            self.assertIn("succeeded", out)
            vm = json.loads(self.cli("vm", "show", "cli01", "--output", "json"))
            self.assertEqual(vm["state"], state, action)
        self.assertRegex(self.cli("vm", "list"), r"cli01\s+stopped\s+t1")
        self.cli("vm", "delete", "cli01", "--wait")
        self.assertNotIn("cli01", self.cli("vm", "list"))
        self.assertIn("vm.delete", self.cli("job", "list", "--limit", "5"))
        self.assertIn("cli01", self.cli("event", "list", "--limit", "20"))
        self.assertIn("vm.create", self.cli("audit", "list", "--limit", "20"))

    def test_errors_are_sentences_with_exit_codes(self):
        r = self.run_cli("vm", "start", "nosuch")
        self.assertEqual(r.returncode, 1)
        self.assertIn("no VM named 'nosuch'", r.stderr)
        r = self.run_cli("vm", "create", "bad/name", "--host", "t1", "--cpus", "1", "--memory", "64", "--disk", "1G")
        self.assertEqual(r.returncode, 1)
        self.assertIn("name", r.stderr)
        r = self.run_cli("vm", "create", "big01", "--host", "t1", "--cpus", "1", "--memory", "-5", "--disk", "1G")
        self.assertNotEqual(r.returncode, 0)
        self.assertNotIn("big01", self.cli("vm", "list"))
        env = dict(self.env, ARMADA_URL="http://127.0.0.1:1")
        r = subprocess.run([ARMADA, "--server", "http://127.0.0.1:1", "vm", "list"], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot reach armadad", r.stderr)

    def test_users_and_roles(self):
        r = self.run_cli("user", "create", "reader", "--role", "read-only", "--password-stdin", stdin="reader-password\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("reader", self.cli("user", "list"))
        env = dict(self.env, HOME=tempfile.mkdtemp(prefix="armada-cli-reader-"))
        r = subprocess.run([ARMADA, "login", "--user", "reader", "--password-stdin"], input="reader-password\n",
                           capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run([ARMADA, "group", "create", "Nope"], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("may not", r.stderr)
        subprocess.run(["rm", "-rf", env["HOME"]])


if __name__ == "__main__":
    unittest.main()
