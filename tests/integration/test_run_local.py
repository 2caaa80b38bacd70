"""scripts/run-local --status (what `make run` checks before it starts
armadad): an armadad counts as running only when the recorded process is
alive, not a zombie, an armadad, and answers on the URL. Only --status is
run: nothing here starts libvirtd or touches qemu:///system."""
import os
import shutil
import signal
import subprocess
import tempfile
import unittest

from armada_harness import ROOT, Armadad, free_port, wait_until

SCRIPT = os.path.join(ROOT, "scripts", "run-local")


class TestRunLocalStatus(unittest.TestCase):
    def setUp(self):
        self.var = tempfile.mkdtemp(prefix="armada-run-local-")
        self.addCleanup(shutil.rmtree, self.var, True)

    def status(self, pid, port):
        with open(os.path.join(self.var, "armadad.pid"), "w") as f:
            f.write(f"{pid}\n")
        env = dict(os.environ, ARMADA_VAR=self.var, ARMADA_PORT=str(port))
        return subprocess.run(["sh", SCRIPT, "--status"], capture_output=True, text=True, env=env, timeout=30)

    def test_a_live_process_that_is_not_armadad(self):
        sleeper = subprocess.Popen(["sleep", "60"])
        self.addCleanup(sleeper.wait)
        self.addCleanup(sleeper.kill)
        r = self.status(sleeper.pid, free_port())
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("not running", r.stdout)

    def test_a_running_armadad_then_its_zombie(self):
        d = Armadad()
        self.addCleanup(d.cleanup)
        d.start()
        r = self.status(d.proc.pid, d.port)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn(f"running (pid {d.proc.pid})", r.stdout)
        # Killed and not reaped: a zombie that still passes `kill -0`.
        os.kill(d.proc.pid, signal.SIGKILL)

        def zombie():
            with open(f"/proc/{d.proc.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        wait_until(zombie, 10, what="the killed armadad to become a zombie")
        os.kill(d.proc.pid, 0)   # what the old check relied on: it still succeeds
        r = self.status(d.proc.pid, d.port)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        self.assertIn("not running", r.stdout)

    def test_no_pid_file(self):
        env = dict(os.environ, ARMADA_VAR=self.var, ARMADA_PORT=str(free_port()))
        r = subprocess.run(["sh", SCRIPT, "--status"], capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)


if __name__ == "__main__":
    unittest.main()
