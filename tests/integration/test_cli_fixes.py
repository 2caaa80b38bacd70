"""The armada CLI's corners found while hardening (issue 10), against a real
armadad: `vm create --host` says where the VM goes (no placement to show),
`assess report` prints no stray '?', `--count 1` names the VM NAME-1, a
health event names the VM that really changed, `user passwd` changes a
password (asked twice without echo, or from stdin), and deploys keep their
seed ISOs under the state directory, whose leftovers go at start-up."""
import json
import os
import pty
import select
import shutil
import stat
import subprocess
import tempfile
import time
import unittest

from armada_harness import ARMADA, Armadad, wait_until
from test_library import NODE_XML, qcow2
from test_monitor import FakeExporter

FAST = ["--monitor-interval-ms", "300", "--monitor-assess-interval-ms", "300"]


class CliCase(unittest.TestCase):
    """One armadad per class with host 't1' (a test-driver node with 64 GiB),
    an administrator logged in through the CLI in a private HOME."""
    ARGS = []

    @classmethod
    def setUpClass(cls):
        cls.node_dir = tempfile.mkdtemp(prefix="armada-cli-fix-node-")
        xml = os.path.join(cls.node_dir, "t1.xml")
        with open(xml, "w") as f:
            f.write(NODE_XML.format(kib=64 << 20))
        cls.d = Armadad(cls.ARGS + ["--ensure-host", "t1=test://" + xml]).start()
        cls.d.token = cls.d.login()
        cls.home = tempfile.mkdtemp(prefix="armada-cli-fix-")
        cls.env = dict(os.environ, HOME=cls.home, ARMADA_URL=cls.d.url, ASAN_OPTIONS="detect_leaks=0")
        for k in ("ARMADA_TOKEN", "ARMADA_USER", "ARMADA_PASSWORD", "ARMADA_NEW_PASSWORD"):
            cls.env.pop(k, None)
        name, pw = cls.d.admin_password()
        r = cls.run_cli("login", "--user", name, "--password-stdin", stdin=pw + "\n")
        assert r.returncode == 0, r.stderr

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.home, ignore_errors=True)
        shutil.rmtree(cls.node_dir, ignore_errors=True)

    @classmethod
    def run_cli(cls, *args, stdin=None, env=None):
        return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env or cls.env, input=stdin, timeout=120)

    def cli(self, *args, stdin=None, env=None):
        r = self.run_cli(*args, stdin=stdin, env=env)
        self.assertEqual(r.returncode, 0, f"armada {' '.join(args)}: {r.stderr}")
        return r.stdout


class TestVmCreateOutput(CliCase):
    def test_named_host_is_not_a_placement(self):
        out = self.cli("vm", "create", "fix01", "--host", "t1", "--cpus", "1", "--memory", "64", "--disk", "1G", "--wait")
        self.assertIn("VM 'fix01' goes to host 't1'", out)
        self.assertNotIn("'?'", out)
        self.assertNotIn("rating", out)
        # The API says so too: "placement" is there, and null.
        st, b = self.d.request("POST", "/api/v1/vms", {"name": "fix02", "host": "t1", "memory_mib": 64})
        self.assertEqual(st, 202, b)
        self.assertIn("placement", b)
        self.assertIsNone(b["placement"])
        self.d.wait_job(b["job"]["id"])
        # Without --host placement chose, and says so with its rating.
        out = self.cli("vm", "create", "fix03", "--cpus", "1", "--memory", "64", "--disk", "1G", "--wait")
        self.assertIn("placement chose host 't1' for VM 'fix03' (rating", out)


class TestUserPasswd(CliCase):
    def login_env(self, user, password):
        env = dict(self.env, HOME=tempfile.mkdtemp(prefix="armada-cli-fix-user-"))
        self.addCleanup(shutil.rmtree, env["HOME"], True)
        r = self.run_cli("login", "--user", user, "--password-stdin", stdin=password + "\n", env=env)
        return env, r

    def test_own_password_from_stdin_and_by_an_administrator(self):
        self.cli("user", "create", "bob", "--role", "read-only", "--password-stdin", stdin="bob-old-password\n")
        bob, r = self.login_env("bob", "bob-old-password")
        self.assertEqual(r.returncode, 0, r.stderr)
        out = self.cli("user", "passwd", "--password-stdin", stdin="bob-new-password\n", env=bob)
        self.assertIn("user 'bob'", out)
        self.assertIn("bob", self.cli("whoami", env=bob))   # this session stays
        self.assertEqual(self.login_env("bob", "bob-old-password")[1].returncode, 1)
        self.assertEqual(self.login_env("bob", "bob-new-password")[1].returncode, 0)
        # Too short: the server's sentence names the field.
        r = self.run_cli("user", "passwd", "--password-stdin", stdin="short\n", env=bob)
        self.assertEqual(r.returncode, 1)
        self.assertIn("password", r.stderr)
        # Another user's password needs an administrator.
        r = self.run_cli("user", "passwd", "admin", "--password-stdin", stdin="taken-over-now\n", env=bob)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(self.login_env("bob", "bob-new-password")[1].returncode, 0)
        name, pw = self.d.admin_password()
        self.assertEqual(self.login_env(name, pw)[1].returncode, 0)
        # An administrator sets bob's: bob's sessions end.
        self.cli("user", "passwd", "bob", "--password-stdin", stdin="bob-third-password\n")
        r = self.run_cli("whoami", env=bob)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertEqual(self.login_env("bob", "bob-third-password")[1].returncode, 0)
        r = self.run_cli("user", "passwd", "nosuch", "--password-stdin", stdin="whatever-pass\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("nosuch", r.stderr)

    def test_prompted_twice_without_echo(self):
        self.cli("user", "create", "carol", "--role", "read-only", "--password-stdin", stdin="carol-old-password\n")
        carol, r = self.login_env("carol", "carol-old-password")
        self.assertEqual(r.returncode, 0, r.stderr)

        def run_on_tty(answers):
            pid, fd = pty.fork()
            if pid == 0:
                os.execve(ARMADA, [ARMADA, "user", "passwd"], carol)
            seen = b""
            try:
                for prompt, answer in answers:
                    deadline = time.monotonic() + 30
                    while prompt not in seen and time.monotonic() < deadline:
                        if select.select([fd], [], [], 1)[0]:
                            try:
                                chunk = os.read(fd, 1024)
                            except OSError:   # the command ended
                                chunk = b""
                            if not chunk:
                                break
                            seen += chunk
                    self.assertIn(prompt, seen)
                    seen = seen[seen.index(prompt) + len(prompt):]
                    os.write(fd, answer + b"\n")
                while True:
                    try:
                        chunk = os.read(fd, 1024)
                    except OSError:
                        break
                    if not chunk:
                        break
                    seen += chunk
            finally:
                _, status = os.waitpid(pid, 0)
                os.close(fd)
            return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")

        code, out = run_on_tty([(b"new password: ", b"carol-tty-password"), (b"new password again: ", b"carol-tty-other")])
        self.assertEqual(code, 1, out)
        self.assertIn("differ", out)
        code, out = run_on_tty([(b"new password: ", b"carol-tty-password"), (b"new password again: ", b"carol-tty-password")])
        self.assertEqual(code, 0, out)
        self.assertNotIn("carol-tty-password", out)   # no echo
        self.assertEqual(self.login_env("carol", "carol-tty-password")[1].returncode, 0)


class TestMonitorOutput(CliCase):
    ARGS = FAST

    def test_assess_report_has_no_stray_question_mark(self):
        ex = FakeExporter(8, 32, lambda i: 0.25)
        self.addCleanup(ex.close)
        self.cli("assess", "add", "srv-fix", "--node-exporter", ex.url)
        wait_until(lambda: all(i["samples"] >= 3 for i in self.d.ok("GET", "/api/v1/assessments")["items"]), 30,
                   what="three samples of srv-fix")
        out = self.cli("assess", "report", "--host-cpus", "16", "--host-memory-mib", "65536")
        self.assertIn("srv-fix", out)
        self.assertIn("\n\nConsolidation plan: ", out)
        self.assertNotIn("?", out)

    def test_health_event_names_the_vm_that_changed(self):
        vms = {}
        for name, severity in (("hv-a", "warning"), ("hv-b", "critical")):
            vm = self.d.create_vm(name, "t1")
            self.assertEqual(self.d.vm_action(vm["id"], "start")["state"], "succeeded")
            vms[name] = vm
            self.d.ok("POST", "/api/v1/alert-rules", {"name": f"{name}-paused", "object_kind": "vm", "metric": "state",
                                                      "comparison": "==", "state": "paused", "severity": severity,
                                                      "scope": "object", "scope_id": vm["id"]})

        def host_event(health):
            evs = self.d.ok("GET", "/api/v1/events?limit=500")["items"]
            return [e for e in evs if e["kind"] == "health.changed" and e["message"].startswith(f"Host 't1' is now {health}")]
        # hv-a paused: t1 turns warning because of hv-a.
        self.d.vm_action(vms["hv-a"]["id"], "pause")
        (ev,) = wait_until(lambda: host_event("warning"), 15, what="t1 to turn warning")
        self.assertIn("VM 'hv-a'", ev["message"])
        # hv-b paused: t1 turns critical because of hv-b, though hv-a's reason comes first.
        self.d.vm_action(vms["hv-b"]["id"], "pause")
        (ev,) = wait_until(lambda: host_event("critical"), 15, what="t1 to turn critical")
        self.assertIn("VM 'hv-b' is now critical", ev["message"])
        self.assertNotIn("hv-a", ev["message"])
        groups = [e for e in self.d.ok("GET", "/api/v1/events?limit=500")["items"]
                  if e["kind"] == "health.changed" and e["message"].startswith("Host group 'All Hosts' is now critical")]
        self.assertTrue(groups and "VM 'hv-b'" in groups[0]["message"], groups)
        out = self.cli("event", "list", "--limit", "50")
        self.assertIn("VM 'hv-b' is now critical", out)


class TestDeploy(CliCase):
    """Deploys with TMPDIR pointed at an empty directory: seeds are built
    under <state-dir>/tmp, never in TMPDIR, and what a killed deploy left
    in <state-dir>/tmp is gone after a start."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-cli-deploy-")
        cls.tmpdir = os.path.join(cls.tmp, "TMPDIR")
        cls.share = os.path.join(cls.tmp, "share")
        cls.state = os.path.join(cls.tmp, "state")
        for p in (cls.tmpdir, cls.share, os.path.join(cls.state, "var", "tmp", "armada-seed-old", "files")):
            os.makedirs(p)
        with open(os.path.join(cls.state, "var", "tmp", "armada-seed-old", "files", "user-data"), "w") as f:
            f.write("#cloud-config\n")
        with open(os.path.join(cls.state, "var", "tmp", "armada-seed-0000.iso"), "wb") as f:
            f.write(b"\0" * 4096)
        os.chmod(os.path.join(cls.state, "var", "tmp"), 0o755)
        qcow2(os.path.join(cls.share, "base.qcow2"), 1 << 30)
        xml = os.path.join(cls.tmp, "node.xml")
        with open(xml, "w") as f:
            f.write(NODE_XML.format(kib=64 << 20))
        saved = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = cls.tmpdir
        try:
            cls.d = Armadad(["--ensure-host", "n1=test://" + xml], state_dir=cls.state).start()
        finally:
            if saved is None:
                del os.environ["TMPDIR"]
            else:
                os.environ["TMPDIR"] = saved
        cls.d.own_dir = True
        cls.leftovers = sorted(os.listdir(os.path.join(cls.state, "var", "tmp")))
        cls.tmp_mode = stat.S_IMODE(os.stat(os.path.join(cls.state, "var", "tmp")).st_mode)
        cls.d.token = cls.d.login()
        cls.home = tempfile.mkdtemp(prefix="armada-cli-fix-")
        cls.env = dict(os.environ, HOME=cls.home, ARMADA_URL=cls.d.url, ARMADA_TOKEN=cls.d.token, ASAN_OPTIONS="detect_leaks=0")
        cls.env.pop("ARMADA_NEW_PASSWORD", None)

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.home, ignore_errors=True)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_leftovers_removed_at_start(self):
        self.assertEqual(self.leftovers, [])
        self.assertEqual(self.tmp_mode, 0o700)

    def test_count_one_names_name_1_and_seeds_stay_out_of_tmpdir(self):
        r = self.d.ok("POST", "/api/v1/library/shares", {"path": self.share})
        self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        self.cli("template", "create", "fix-tpl", "--image", "base.qcow2", "--memory", "64")
        out = self.cli("vm", "create", "one", "--template", "fix-tpl", "--count", "1", "--host", "n1", "--wait")
        self.assertIn("succeeded", out)
        names = [v["name"] for v in json.loads(self.cli("vm", "list", "--output", "json"))["items"]]
        self.assertIn("one-1", names)
        self.assertNotIn("one", names)
        out = self.cli("template", "deploy", "fix-tpl", "two", "--count", "1", "--host", "n1", "--wait")
        self.assertIn("two-1", out)
        # Without --count: the name as given.
        self.cli("template", "deploy", "fix-tpl", "plain", "--host", "n1", "--wait")
        names = [v["name"] for v in json.loads(self.cli("vm", "list", "--output", "json"))["items"]]
        self.assertIn("plain", names)
        # Every deploy built a seed ISO, none of them in TMPDIR, none left behind.
        seeds = [v for v in json.loads(self.cli("vm", "list", "--output", "json"))["items"]
                 if any(d["target"] == "hdc" for d in v["disks"])]
        self.assertEqual(len(seeds), 3)
        self.assertEqual(os.listdir(self.tmpdir), [])
        self.assertEqual(os.listdir(os.path.join(self.state, "var", "tmp")), [])


if __name__ == "__main__":
    unittest.main()
