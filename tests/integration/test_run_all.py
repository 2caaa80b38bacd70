"""tests/run-all's worker pool (--jobs N) and the harness's start beside
other processes: a module's output is printed whole, the totals and the
exit status are the serial run's, a module that crashes or hangs counts as
failed and leaves no process behind; an armadad whose port another process
took (or answers on) is started again on another port."""
import http.server
import importlib.machinery
import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import unittest

import armada_harness
from armada_harness import ROOT, Armadad

RUN_ALL = os.path.join(ROOT, "tests", "run-all")

MODULES = {
    "test_ok": """
        import unittest
        class T(unittest.TestCase):
            def test_a(self):
                for i in range(200):
                    print("ok-line", i, flush=True)
            def test_b(self):
                pass
            @unittest.skip("not here")
            def test_c(self):
                pass
    """,
    "test_bad": """
        import unittest
        class T(unittest.TestCase):
            def test_fails(self):
                for i in range(200):
                    print("bad-line", i, flush=True)
                self.assertEqual(1, 2)
            def test_passes(self):
                pass
    """,
    "test_crash": """
        import os, unittest
        class T(unittest.TestCase):
            def test_dies(self):
                print("crash-line before dying", flush=True)
                os._exit(3)
    """,
    "test_hang": """
        import os, subprocess, time, unittest
        class T(unittest.TestCase):
            def test_hangs(self):
                child = subprocess.Popen(["sleep", "300"])
                with open(os.environ["HANG_PIDS"], "w") as f:
                    f.write(f"{os.getpid()} {child.pid}")
                print("hang-line waiting", flush=True)
                time.sleep(300)
    """,
}

DRIVER = """
import importlib.machinery, importlib.util, sys
loader = importlib.machinery.SourceFileLoader("runall", sys.argv[1])
spec = importlib.util.spec_from_loader("runall", loader)
m = importlib.util.module_from_spec(spec)
loader.exec_module(m)
m.MODULE_TIMEOUT_S = int(sys.argv[5])
m.POOLED["fake"] = (sys.argv[2], "sqlite")
sys.argv = ["run-all", "--build", sys.argv[3], "--suite", "fake", "--jobs", sys.argv[4]]
m.main()
"""


class TestPool(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="armada-runall-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.suite = os.path.join(self.tmp, "fake")
        os.mkdir(self.suite)
        for name, src in MODULES.items():
            with open(os.path.join(self.suite, name + ".py"), "w") as f:
                f.write(textwrap.dedent(src))
        self.build = armada_harness.BUILD
        self.times = os.path.join(self.tmp, "module-times.json")
        self.pids = os.path.join(self.tmp, "hang-pids")

    def run_pool(self, jobs):
        env = dict(os.environ, HANG_PIDS=self.pids, ARMADA_OPENAPI_CHECK="0", ARMADA_TEST_TIMES=self.times)
        env.pop("ARMADA_TEST_STORE", None)
        return subprocess.run([sys.executable, "-c", DRIVER, RUN_ALL, self.suite, self.build, str(jobs), "8"],
                              capture_output=True, text=True, env=env, timeout=120)

    def alive(self, pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().split(") ")[1].split()[0] != "Z"
        except OSError:
            return False

    def test_modules_side_by_side(self):
        r = self.run_pool(3)
        out = r.stdout
        # ok: 2 passed 1 skipped; bad: 1 + 1; crash and hang: 1 failed each.
        self.assertEqual(out.strip().splitlines()[-1], "3 passed, 3 failed, 1 skipped", out[-3000:])
        self.assertEqual(r.returncode, 1)
        # Each module's output is one block between its === lines.
        for mod, marker in (("test_ok", "ok-line"), ("test_bad", "bad-line")):
            m = re.search(rf"^=== fake {mod} ===\n(.*?)^=== fake {mod}: ", out, re.S | re.M)
            self.assertIsNotNone(m, out[-3000:])
            self.assertEqual(out.count(marker + " "), 200)
            self.assertEqual(m.group(1).count(marker + " "), 200, f"{mod}'s lines are not together")
        self.assertRegex(out, r"=== fake test_crash: 0 passed, 1 failed, 0 skipped, [\d.]+s, FAILED: the worker exited"
                              r" with 3 without a result ===")
        self.assertIn("crash-line before dying", out)
        self.assertRegex(out, r"=== fake test_hang: 0 passed, 1 failed, 0 skipped, [\d.]+s, FAILED: killed after 8s")
        self.assertIn("hang-line waiting", out)
        # The hung module and the process it started are gone; so are the
        # workers' temporary directories.
        with open(self.pids) as f:
            worker, child = map(int, f.read().split())
        self.assertFalse(self.alive(worker), "the hung worker survived")
        self.assertFalse(self.alive(child), "the hung worker's child survived")
        # The times of this run (which order the next one, longest first)
        # are kept.
        import json
        with open(self.times) as f:
            times = json.load(f)
        self.assertEqual(sorted(times), [f"{self.suite}/sqlite/{m}" for m in sorted(MODULES)])
        self.assertGreaterEqual(times[f"{self.suite}/sqlite/test_hang"], 8)

    def test_class_level_skips_and_errors_count_once(self):
        """A class whose setUpClass raises SkipTest ran none of its tests:
        it counts as one skipped, not as one skipped against zero run (-1
        passed); one whose setUpClass fails counts one failed; a test with
        two failing subtests is one failed test. The same in a worker
        (--jobs 2) and in run-all's own process (--jobs 1)."""
        for name in list(MODULES):
            os.unlink(os.path.join(self.suite, name + ".py"))
        mods = {
            "test_skipclass": """
                import unittest
                class T(unittest.TestCase):
                    @classmethod
                    def setUpClass(cls):
                        raise unittest.SkipTest("no test bed here")
                    def test_a(self):
                        pass
                    def test_b(self):
                        pass
                class U(unittest.TestCase):
                    def test_runs(self):
                        pass
            """,
            "test_errclass": """
                import unittest
                class T(unittest.TestCase):
                    @classmethod
                    def setUpClass(cls):
                        raise RuntimeError("set-up broke")
                    def test_a(self):
                        pass
            """,
            "test_subtests": """
                import unittest
                class T(unittest.TestCase):
                    def test_two_bad_subtests(self):
                        for i in range(3):
                            with self.subTest(i=i):
                                self.assertEqual(i, 0)
                    def test_fine(self):
                        pass
            """,
        }
        for name, src in mods.items():
            with open(os.path.join(self.suite, name + ".py"), "w") as f:
                f.write(textwrap.dedent(src))
        for jobs in (2, 1):
            r = self.run_pool(jobs)
            lines = r.stdout.strip().splitlines()
            # test_runs and test_fine passed; errclass and the subtest test
            # failed; skipclass's class skipped.
            self.assertEqual(lines[-1], "2 passed, 2 failed, 1 skipped", f"--jobs {jobs}\n" + r.stdout[-3000:])
            if jobs == 2:
                self.assertIn("=== fake test_skipclass: 1 passed, 0 failed, 1 skipped,", r.stdout)
                self.assertIn("=== fake test_errclass: 0 passed, 1 failed, 0 skipped,", r.stdout)

    def test_lane_runs_its_modules_one_at_a_time_beside_the_pool(self):
        """A lane suite's modules (the system suite's) never overlap each
        other, and run while the pool's workers run. Two lane modules hold
        a lock file while they wait for a pool module's marker and then say
        they saw it; the pool module waits for that: overlap in the lane
        breaks the lock, no lane beside the pool leaves both waiting until
        they fail."""
        for name in list(MODULES):
            os.unlink(os.path.join(self.suite, name + ".py"))
        lane = os.path.join(self.tmp, "lanesuite")
        os.mkdir(lane)
        wait = ("import os, time, unittest\n"
                "def wait(pred, what):\n"
                "    end = time.monotonic() + 30\n"
                "    while not pred():\n"
                "        if time.monotonic() > end:\n"
                "            raise AssertionError('timed out waiting for ' + what)\n"
                "        time.sleep(0.05)\n")
        for mod in ("test_lane_a", "test_lane_b"):
            with open(os.path.join(lane, mod + ".py"), "w") as f:
                f.write(wait + textwrap.dedent("""
                    class T(unittest.TestCase):
                        def test_alone(self):
                            d = os.environ["LANE_DIR"]
                            lock = os.path.join(d, "lane.lock")
                            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # another lane module: EEXIST
                            try:
                                wait(lambda: os.path.exists(os.path.join(d, "pool.marker")), "the pool")
                                open(os.path.join(d, "lane.seen"), "w").close()
                            finally:
                                os.close(fd)
                                os.unlink(lock)
                """))
        with open(os.path.join(self.suite, "test_pool_side.py"), "w") as f:
            f.write(wait + textwrap.dedent("""
                class T(unittest.TestCase):
                    def test_beside_the_lane(self):
                        d = os.environ["LANE_DIR"]
                        open(os.path.join(d, "pool.marker"), "w").close()
                        wait(lambda: os.path.exists(os.path.join(d, "lane.seen")), "a lane module")
            """))
        driver = DRIVER.replace('m.POOLED["fake"] = (sys.argv[2], "sqlite")',
                                'm.POOLED["fake"] = (sys.argv[2], "sqlite")\nm.POOLED["lane"] = (sys.argv[6], "sqlite")\n'
                                'm.LANE_SUITES = (sys.argv[6],)')
        driver = driver.replace('"--suite", "fake",', '"--suite", "fake", "--suite", "lane",')
        env = dict(os.environ, LANE_DIR=self.tmp, ARMADA_OPENAPI_CHECK="0", ARMADA_TEST_TIMES=self.times)
        env.pop("ARMADA_TEST_STORE", None)
        r = subprocess.run([sys.executable, "-c", driver, RUN_ALL, self.suite, self.build, "3", "120", lane],
                           capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(r.stdout.strip().splitlines()[-1], "3 passed, 0 failed", r.stdout[-3000:] + r.stderr[-3000:])
        self.assertIn("and one lane for", r.stdout)

    @unittest.skipUnless(os.geteuid() == 0, "test beds are root's (tests/testbed/testbed down needs root)")
    def test_lane_module_killed_leaves_no_bed_nor_files(self):
        """A lane module killed at its timeout (the pool's timeout x 3) counts
        one failed, and what it left is gone as a pool module's is: its
        TMPDIR (a directory of its own) and the test bed it brought up
        (/tmp/armada-testbed-ID, owner its pid), taken down by
        `testbed down`; a bed of another owner stays."""
        for name in list(MODULES):
            os.unlink(os.path.join(self.suite, name + ".py"))
        lane = os.path.join(self.tmp, "lanesuite")
        os.mkdir(lane)
        bed_id = f"zl{os.getpid() % 10000}"
        other = tempfile.mkdtemp(prefix="armada-testbed-zo", dir="/tmp")
        self.addCleanup(shutil.rmtree, other, True)
        with open(os.path.join(other, "bed.env"), "w") as f:
            f.write(f"ID=zo1\nOWNER={os.getpid()}\n")
        with open(os.path.join(lane, "test_lane_hang.py"), "w") as f:
            f.write(textwrap.dedent(f"""
                import os, tempfile, time, unittest
                class T(unittest.TestCase):
                    def test_hangs(self):
                        bed = "/tmp/armada-testbed-{bed_id}"
                        os.makedirs(bed)
                        with open(os.path.join(bed, "bed.env"), "w") as f:
                            f.write("ID={bed_id}\\nOWNER=%d\\n" % os.getpid())
                        tmp = tempfile.mkdtemp(prefix="left-")
                        with open(os.path.join(os.environ["LANE_DIR"], "lane.tmpdir"), "w") as f:
                            f.write(tempfile.gettempdir() + "\\n" + tmp)
                        print("lane-hang waiting", flush=True)
                        time.sleep(300)
            """))
        self.addCleanup(shutil.rmtree, f"/tmp/armada-testbed-{bed_id}", True)
        driver = DRIVER.replace('m.POOLED["fake"] = (sys.argv[2], "sqlite")',
                                'm.POOLED["fake"] = (sys.argv[2], "sqlite")\nm.POOLED["lane"] = (sys.argv[6], "sqlite")\n'
                                'm.LANE_SUITES = (sys.argv[6],)')
        driver = driver.replace('"--suite", "fake",', '"--suite", "lane",')
        env = dict(os.environ, LANE_DIR=self.tmp, ARMADA_OPENAPI_CHECK="0", ARMADA_TEST_TIMES=self.times)
        env.pop("ARMADA_TEST_STORE", None)
        r = subprocess.run([sys.executable, "-c", driver, RUN_ALL, self.suite, self.build, "2", "2", lane],
                           capture_output=True, text=True, env=env, timeout=300)
        out = r.stdout[-3000:] + r.stderr[-3000:]
        self.assertEqual(r.stdout.strip().splitlines()[-1], "0 passed, 1 failed", out)
        self.assertIn("lane-hang waiting", r.stdout)
        self.assertRegex(r.stdout, r"FAILED: killed after 6s \(ARMADA_TEST_MODULE_TIMEOUT x 3\)", out)
        self.assertIn(f"left test bed '{bed_id}' up; taking it down", r.stdout, out)
        self.assertFalse(os.path.exists(f"/tmp/armada-testbed-{bed_id}"), out)
        self.assertTrue(os.path.exists(os.path.join(other, "bed.env")), "another owner's bed was touched")
        with open(os.path.join(self.tmp, "lane.tmpdir")) as f:
            tmpdir, left = f.read().split("\n")
        self.assertNotEqual(tmpdir, tempfile.gettempdir(), "the lane module had no TMPDIR of its own")
        self.assertFalse(os.path.exists(left), out)
        self.assertFalse(os.path.exists(tmpdir), out)

    def test_openapi_count_is_summed(self):
        """Every worker's validated requests reach the parent's closing
        openapi-check line."""
        for name in list(MODULES):
            os.unlink(os.path.join(self.suite, name + ".py"))
        for i in range(3):
            with open(os.path.join(self.suite, f"test_api{i}.py"), "w") as f:
                f.write(textwrap.dedent(f"""
                    import unittest
                    from armada_harness import Armadad
                    class T(unittest.TestCase):
                        def test_version(self):
                            with Armadad() as d:
                                for _ in range({i + 1}):
                                    self.assertEqual(d.request("GET", "/api/v1/version", auth=False)[0], 200)
                """))
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests", "lib"), ARMADA_TEST_TIMES=self.times)
        env.pop("ARMADA_TEST_STORE", None)
        env.pop("ARMADA_OPENAPI_CHECK", None)
        r = subprocess.run([sys.executable, "-c", DRIVER, RUN_ALL, self.suite, self.build, "3", "600"],
                           capture_output=True, text=True, env=env, timeout=300)
        self.assertEqual(r.stdout.strip().splitlines()[-1], "3 passed, 0 failed", r.stdout[-3000:] + r.stderr[-3000:])
        # 1 + 2 + 3 version requests, plus each start's own waiting for an answer (at least one each).
        m = re.findall(r"openapi-check: (\d+) request\(s\) of (\d+) documented operation\(s\)", r.stderr)
        self.assertEqual(len(m), 1, r.stderr[-3000:])
        self.assertGreaterEqual(int(m[0][0]), 9)
        self.assertEqual(int(m[0][1]), 1)


class _Impostor(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"version": "impostor"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


class TestPortTaken(unittest.TestCase):
    """free_port() hands out a port that another process may take before
    armadad binds it."""

    def start_with_first_port(self, port):
        ports = [port]
        real = armada_harness.free_port
        armada_harness.free_port = lambda: ports.pop() if ports else real()
        self.addCleanup(setattr, armada_harness, "free_port", real)
        d = Armadad()
        self.addCleanup(d.cleanup)
        d.start()
        return d

    def test_port_answered_by_another_server(self):
        srv = http.server.HTTPServer(("127.0.0.1", 0), _Impostor)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.addCleanup(srv.server_close)
        self.addCleanup(srv.shutdown)
        d = self.start_with_first_port(srv.server_address[1])
        self.assertNotEqual(d.port, srv.server_address[1])
        st, body = d.request("GET", "/api/v1/version", auth=False)
        self.assertEqual(st, 200)
        self.assertNotEqual(body.get("version"), "impostor")
        self.assertIn(f"port {srv.server_address[1]} was taken", d.log_text())

    def test_port_bound_by_another_socket(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self.addCleanup(s.close)
        d = self.start_with_first_port(s.getsockname()[1])
        self.assertNotEqual(d.port, s.getsockname()[1])
        self.assertEqual(d.request("GET", "/api/v1/version", auth=False)[0], 200)
