"""armadad as a program: configuration file and flags, TLS, refusals."""
import os
import ssl
import subprocess
import tempfile
import unittest
import urllib.request

from armada_harness import ARMADAD, Armadad, free_port


class TestDaemon(unittest.TestCase):
    def run_armadad(self, *args, timeout=20):
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
        with tempfile.TemporaryDirectory() as d:
            return subprocess.run([ARMADAD, "--state-dir", d, *args], capture_output=True, text=True, timeout=timeout, env=env)

    def test_refuses_plain_http_off_loopback(self):
        r = self.run_armadad("--listen", "0.0.0.0:%d" % free_port())
        self.assertEqual(r.returncode, 2)
        self.assertIn("refusing plain HTTP", r.stderr)

    def test_bad_flags_and_config(self):
        r = self.run_armadad("--listen", "nonsense")
        self.assertEqual(r.returncode, 2)
        self.assertIn("ADDR:PORT", r.stderr)
        r = self.run_armadad("--workers", "-3")
        self.assertEqual(r.returncode, 2)
        with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
            f.write("listen = 127.0.0.1:1\nno-such-key = 1\n")
            f.flush()
            r = self.run_armadad("--config", f.name)
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown setting 'no-such-key'", r.stderr)

    def test_protection_settings(self):
        """--backup-tls never starts without armadad's NBD client
        certificates (a backup would otherwise fail, or fall back to plain
        NBD); yes/no flags say which values they take."""
        for flag in ("--backup-tls", "--restore-direct"):
            r = self.run_armadad(flag, "maybe")
            self.assertEqual(r.returncode, 2)
            self.assertIn(f"'{flag[2:]}' must be yes or no, not 'maybe'", r.stderr)
        r = self.run_armadad("--backup-tls-dir", "certs")
        self.assertEqual(r.returncode, 2)
        self.assertIn("'backup-tls-dir' must be an absolute directory", r.stderr)
        with tempfile.TemporaryDirectory() as certs:
            r = self.run_armadad("--backup-tls", "yes", "--backup-tls-dir", os.path.join(certs, "none"))
            self.assertEqual(r.returncode, 2)
            self.assertIn("--backup-tls needs armadad's NBD client certificates", r.stderr)
            self.assertIn("ca-cert.pem", r.stderr)
            for i, name in enumerate(("ca-cert.pem", "client-cert.pem")):
                with open(os.path.join(certs, name), "w") as f:
                    f.write("-----BEGIN CERTIFICATE-----\n")
                r = self.run_armadad("--backup-tls", "yes", "--backup-tls-dir", certs)
                self.assertEqual(r.returncode, 2)
                self.assertIn(("client-cert.pem", "client-key.pem")[i], r.stderr)
            with open(os.path.join(certs, "client-key.pem"), "w") as f:
                f.write("-----BEGIN PRIVATE KEY-----\n")
            # All three there: it starts (and so does the default, off).
            d = Armadad(["--backup-tls", "yes", "--backup-tls-dir", certs, "--restore-direct", "no"])
            d.start()
            try:
                self.assertEqual(d.stop(), 0)
            finally:
                d.cleanup()

    def test_config_file_then_flags(self):
        port = free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as f:
            f.write(f"# a comment\nlisten = 127.0.0.1:{port}\nadmin-user = boss\n")
        try:
            d = Armadad(["--config", f.name])
            # the harness's --listen comes after --config and wins
            d.start()
            try:
                name, _ = d.admin_password()
                self.assertEqual(name, "boss")
                self.assertEqual(d.stop(), 0)
            finally:
                d.cleanup()
        finally:
            os.unlink(f.name)

    def test_tls_self_signed(self):
        d = Armadad(["--tls-self-signed"])
        d.port = None
        try:
            # The harness speaks plain HTTP; start by hand to use HTTPS.
            port = free_port()
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
            state = os.path.join(d.dir, "var")
            p = subprocess.Popen([ARMADAD, "--state-dir", state, "--listen", f"127.0.0.1:{port}", "--tls-self-signed"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            try:
                line = p.stdout.readline()
                while line and "listening" not in line:
                    line = p.stdout.readline()
                self.assertIn(f"https://127.0.0.1:{port}", line)
                key = os.path.join(state, "tls", "armadad.key")
                self.assertEqual(os.stat(key).st_mode & 0o777, 0o600)
                ctx = ssl.create_default_context(cafile=os.path.join(state, "tls", "armadad.crt"))
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/api/v1/version", context=ctx, timeout=10) as r:
                    self.assertEqual(r.status, 200)
                with self.assertRaises(Exception):
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/version", timeout=5).read()
            finally:
                p.terminate()
                self.assertEqual(p.wait(20), 0)
                p.stdout.close()
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
