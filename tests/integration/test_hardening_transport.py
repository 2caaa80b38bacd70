"""Limits and transport (issue 10): TLS versions and suites, HSTS and the
Content-Security-Policy, the failed-login limiter, the audit retention,
per-address connection limits and the idle timeout, private state files,
who may read fence commands and webhooks, and the /metrics token rule.

Tests that need another client address bind their socket to another
loopback address (127.0.0.2, ...): armadad listens on 127.0.0.1, which
takes connections from any 127.0.0.0/8 source."""
import concurrent.futures
import http.client
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import tempfile
import time
import unittest

import dbdirect
from armada_harness import ARMADAD, Armadad, free_port, wait_until


def request_from(d, source, method, path, body=None, token=None, timeout=10):
    """One request to d from the loopback address source; (status, parsed body)."""
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout, source_address=(source, 0))
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = "Bearer " + token
        c.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        r = c.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, data
    finally:
        c.close()


def login_from(d, source, name, password):
    return request_from(d, source, "POST", "/api/v1/sessions", {"name": name, "password": password})


def metric(d, name):
    st, body = d.request("GET", "/metrics")
    assert st == 200, (st, body)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not in /metrics")


class TestTls(unittest.TestCase):
    """armadad --tls-self-signed speaks TLS 1.2 with ECDHE and AEAD suites
    and TLS 1.3, and refuses TLS 1.1, CBC suites and RSA key transport."""

    @classmethod
    def setUpClass(cls):
        cls.gnutls = shutil.which("gnutls-cli")
        assert cls.gnutls, "gnutls-cli is missing (Debian package gnutls-bin; scripts/bootstrap installs it)"
        cls.dir = tempfile.mkdtemp(prefix="armada-tls-")
        cls.port = free_port()
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
        cls.log = open(os.path.join(cls.dir, "armadad.log"), "wb")
        cls.proc = subprocess.Popen([ARMADAD, "--state-dir", os.path.join(cls.dir, "var"), "--listen", f"127.0.0.1:{cls.port}",
                                     "--tls-self-signed"], stdout=cls.log, stderr=subprocess.STDOUT, env=env)
        cls.ctx = ssl.create_default_context()
        cls.ctx.check_hostname = False
        cls.ctx.verify_mode = ssl.CERT_NONE

        def answers():
            assert cls.proc.poll() is None, "armadad exited"
            try:
                return cls.https("GET", "/api/v1/version")[0] == 200
            except OSError:
                return False
        try:
            wait_until(answers, 30, interval=0.1, what="armadad to answer over HTTPS")
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.proc.poll() is None:
            cls.proc.terminate()
            cls.proc.wait(20)
        cls.log.close()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def https(cls, method, path):
        c = http.client.HTTPSConnection("127.0.0.1", cls.port, timeout=10, context=cls.ctx)
        try:
            c.request(method, path)
            r = c.getresponse()
            r.read()
            return r.status, r.headers
        finally:
            c.close()

    def handshake(self, priority):
        r = subprocess.run([self.gnutls, "--insecure", "--priority", priority, "-p", str(self.port), "127.0.0.1"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        return r.returncode == 0 and "Handshake was completed" in r.stdout, r.stdout + r.stderr

    def test_versions_and_suites(self):
        refused = {
            "TLS 1.1": "NORMAL:-VERS-ALL:+VERS-TLS1.1",
            "TLS 1.0": "NORMAL:-VERS-ALL:+VERS-TLS1.0",
            "TLS 1.2 with CBC": "NORMAL:-VERS-ALL:+VERS-TLS1.2:-CIPHER-ALL:+AES-128-CBC:+AES-256-CBC",
            "TLS 1.2 with RSA key transport": "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+RSA",
            "TLS 1.2 with finite-field DHE": "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+DHE-RSA",
        }
        for what, prio in refused.items():
            ok, out = self.handshake(prio)
            self.assertFalse(ok, f"{what} was accepted:\n{out}")
        accepted = {
            "TLS 1.2 ECDHE AES-128-GCM": "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA:-CIPHER-ALL:+AES-128-GCM",
            "TLS 1.2 ECDHE AES-256-GCM": "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA:-CIPHER-ALL:+AES-256-GCM",
            "TLS 1.2 ECDHE ChaCha20-Poly1305": "NORMAL:-VERS-ALL:+VERS-TLS1.2:-KX-ALL:+ECDHE-RSA:-CIPHER-ALL:+CHACHA20-POLY1305",
            "TLS 1.3": "NORMAL:-VERS-ALL:+VERS-TLS1.3",
        }
        for what, prio in accepted.items():
            ok, out = self.handshake(prio)
            self.assertTrue(ok, f"{what} was refused:\n{out}")

    def test_openssl_client_tls11_refused(self):
        openssl = shutil.which("openssl")
        if not openssl:
            self.skipTest("openssl is not installed")
        r = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{self.port}", "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        r = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{self.port}", "-tls1_2"],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"Cipher is ECDHE-RSA-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)")

    def test_hsts_on_https(self):
        for path in ("/api/v1/version", "/api/v1/nothing-here"):
            st, headers = self.https("GET", path)
            self.assertEqual(headers.get("Strict-Transport-Security"), "max-age=31536000", (path, st))


class TestHeaders(unittest.TestCase):
    """Plain HTTP: no HSTS (it is meaningless there); every answer carries a
    Content-Security-Policy, the console's pages one that allows only
    armadad's own scripts, styles and WebSocket."""

    @classmethod
    def setUpClass(cls):
        web = os.path.join(os.environ.get("ARMADA_ROOT", os.path.join(os.path.dirname(__file__), "..", "..")), "web")
        cls.d = Armadad(["--web-dir", os.path.abspath(web)]).start()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def headers(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            return r.status, r.headers
        finally:
            c.close()

    def test_console_csp(self):
        st, h = self.headers("/")
        self.assertEqual(st, 200)
        csp = h["Content-Security-Policy"]
        directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
        self.assertEqual(directives["default-src"], ["'none'"])
        self.assertEqual(directives["script-src"], ["'self'"])
        self.assertEqual(directives["style-src"], ["'self'"])
        self.assertIn("'self'", directives["connect-src"])
        self.assertEqual(directives["frame-ancestors"], ["'none'"])
        self.assertNotIn("'unsafe-inline'", csp)
        self.assertNotIn("'unsafe-eval'", csp)
        self.assertIsNone(h.get("Strict-Transport-Security"))
        st, h = self.headers("/js/app.js")
        self.assertEqual(st, 200)
        self.assertIn("script-src 'self'", h["Content-Security-Policy"])

    def test_api_csp(self):
        st, h = self.headers("/api/v1/version")
        self.assertEqual(st, 200)
        self.assertTrue(h["Content-Security-Policy"].startswith("default-src 'none'"), h["Content-Security-Policy"])
        self.assertIsNone(h.get("Strict-Transport-Security"))

    def test_console_has_no_inline_script_or_style(self):
        web = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "web")
        for name in os.listdir(web):
            if name.endswith(".html"):
                with open(os.path.join(web, name)) as f:
                    text = f.read()
                for tag in ("<script>", "<style", " style=", " onclick=", " onload="):
                    self.assertNotIn(tag, text, f"{name} has {tag!r}, which the Content-Security-Policy blocks")


class TestLoginLimiter(unittest.TestCase):
    """Each test uses its own client address, so the per-address windows of
    one test do not reach another."""

    @classmethod
    def setUpClass(cls):
        # Password checks block a server thread (argon2id: about a second
        # each under the sanitizers on a busy machine); a connection that
        # waits behind several of them must not meet the idle timeout,
        # which is not what these tests are about.
        cls.d = Armadad(["--idle-timeout-s", "300"]).start()
        cls.d.token = cls.d.login()
        for name in ("addr", "victim", "flooded"):
            cls.d.ok("POST", "/api/v1/users", {"name": name, "password": "right-password", "role": "read-only"})

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_user_named_addr_has_its_own_key(self):
        # Keys were "NAME|ADDRESS" and "addr|ADDRESS": a user named "addr"
        # shared the address's slot and was blocked after three failures.
        src = "127.0.0.11"
        for i in range(3):
            st, b = login_from(self.d, src, "addr", "wrong")
            self.assertEqual(st, 401, (i, b))
        st, b = login_from(self.d, src, "addr", "right-password")
        self.assertEqual(st, 201, b)

    def test_parallel_attempts_cannot_outrun_the_limit(self):
        src = "127.0.0.12"
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as ex:
            # A generous timeout: a few password checks (argon2id, under the
            # sanitizers, on a busy machine) may queue on one server thread.
            codes = list(ex.map(lambda i: request_from(self.d, src, "POST", "/api/v1/sessions",
                                                       {"name": "admin", "password": f"wrong-{i}"}, timeout=120)[0], range(24)))
        self.assertEqual(codes.count(401) + codes.count(429), 24, codes)
        self.assertLessEqual(codes.count(401), 5, f"more wrong passwords were tried than the limit allows: {codes}")

    def test_lockout_stays_with_its_address(self):
        bad, good = "127.0.0.13", "127.0.0.14"
        for _ in range(5):
            self.assertEqual(login_from(self.d, bad, "victim", "wrong")[0], 401)
        st, b = login_from(self.d, bad, "victim", "right-password")
        self.assertEqual(st, 429, b)
        # The same user from another address is not locked out...
        st, b = login_from(self.d, good, "victim", "right-password")
        self.assertEqual(st, 201, b)
        # ...nor another user there; the flooded address only limits itself.
        st, b = login_from(self.d, bad, "flooded", "right-password")
        self.assertEqual(st, 429, b)
        st, b = login_from(self.d, good, "flooded", "right-password")
        self.assertEqual(st, 201, b)

    def test_refusals_are_counted_not_each_audited(self):
        src = "127.0.0.15"
        before = metric(self.d, "armada_login_rate_limited_total")
        for _ in range(5):
            self.assertEqual(login_from(self.d, src, "flooded", "wrong")[0], 401)
        for _ in range(40):
            self.assertEqual(login_from(self.d, src, "flooded", "wrong")[0], 429)
        self.assertEqual(metric(self.d, "armada_login_rate_limited_total") - before, 40)
        rows = [a for a in self.d.ok("GET", "/api/v1/audit?limit=1000")["items"]
                if a["address"] == src and a["action"] == "session.create"]
        refused = [a for a in rows if "too many" in (a["detail"] or "")]
        wrong = [a for a in rows if "wrong" in (a["detail"] or "")]
        self.assertEqual(len(wrong), 5, rows)
        self.assertEqual(len(refused), 1, refused)


class TestAuditRetention(unittest.TestCase):
    def test_old_audit_rows_are_pruned(self):
        d = Armadad(["--audit-retention-days", "30", "--monitor-interval-ms", "200"])
        try:
            d.start()
            d.token = d.login()
            d.stop()
            day = 24 * 3600 * 1000
            now = int(time.time() * 1000)
            with dbdirect.connect(d) as c:
                for age_days, action in ((100, "test.ancient"), (31, "test.old"), (29, "test.recent")):
                    c.execute("INSERT INTO audit(at, action, result) VALUES (?, ?, 'ok')", (now - age_days * day, action))
            d.start()
            d.token = d.login()

            def actions():
                return {a["action"] for a in d.ok("GET", "/api/v1/audit?limit=1000")["items"]}
            wait_until(lambda: "test.old" not in actions(), 20, interval=0.2, what="the audit prune")
            self.assertNotIn("test.ancient", actions())
            self.assertIn("test.recent", actions())
            self.assertIn("session.create", actions())
        finally:
            d.cleanup()

    def test_retention_must_be_positive(self):
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([ARMADAD, "--state-dir", tmp, "--audit-retention-days", "0"], capture_output=True, text=True,
                               timeout=20, env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("audit-retention-days", r.stderr)


class TestConnections(unittest.TestCase):
    def test_flood_from_one_address_does_not_starve_another(self):
        # More half-open connections than armadad's overall limit (512)
        # from 127.0.0.1; before the per-address limit they took every
        # slot and 127.0.0.2 got no answer.
        d = Armadad().start()  # the default limit: 64 per address
        socks = []
        try:
            for _ in range(600):
                s = socket.socket()
                s.settimeout(5)
                try:
                    s.connect(("127.0.0.1", d.port))
                    s.sendall(b"GET /api/v1/version HTTP/1.1\r\nHost: x\r\n")  # never finished
                except OSError:
                    s.close()
                    continue
                socks.append(s)
            t0 = time.monotonic()
            st, b = request_from(d, "127.0.0.2", "GET", "/api/v1/version", timeout=5)
            self.assertEqual(st, 200, b)
            self.assertLess(time.monotonic() - t0, 2.0)
            # Connections past the limit were closed by armadad at once.
            closed = 0
            for s in socks:
                s.settimeout(0.05)
                try:
                    if s.recv(1) == b"":
                        closed += 1
                except socket.timeout:
                    pass
                except OSError:
                    closed += 1
            self.assertGreaterEqual(closed, 600 - 64 - 8, "connections over the per-address limit stayed open")
        finally:
            for s in socks:
                s.close()
            d.cleanup()

    def test_idle_connection_is_closed(self):
        d = Armadad(["--idle-timeout-s", "2"]).start()
        try:
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10, source_address=("127.0.0.3", 0))
            try:
                s.sendall(b"GET /api/v1/version HTTP/1.1\r\n")  # a header never finished
                t0 = time.monotonic()
                s.settimeout(8)
                try:
                    data = s.recv(1024)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"", "armadad answered a request whose header never ended")
                self.assertLess(time.monotonic() - t0, 7, "the idle connection was not closed")
            finally:
                s.close()
            # A slow but live client is not cut off: a header sent in pieces,
            # each within the timeout, still gets its answer.
            s = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            try:
                for piece in (b"GET /api/v1/version HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n", b"\r\n"):
                    s.sendall(piece)
                    time.sleep(1)  # slower than a browser, within the 2 s idle timeout: the point of the test
                self.assertTrue(s.recv(64).startswith(b"HTTP/1.1 200"))
            finally:
                s.close()
        finally:
            d.cleanup()


class TestConsoleOutlivesIdleTimeout(unittest.TestCase):
    """The idle timeout is for connections that have not finished their
    request: a console WebSocket, once upgraded, stays open however long
    the VM's screen is still."""

    def test_quiet_console_stays_open(self):
        lis = socket.socket()
        lis.bind(("127.0.0.1", 0))
        lis.listen(4)
        vnc_port = lis.getsockname()[1]
        peers = []

        def serve():
            while True:
                try:
                    c, _ = lis.accept()
                except OSError:
                    return
                c.sendall(b"RFB 003.008\n")
                peers.append(c)
        import threading
        threading.Thread(target=serve, daemon=True).start()
        tmp = tempfile.mkdtemp(prefix="armada-console-")
        xml = os.path.join(tmp, "legacy.xml")
        with open(xml, "w") as f:
            f.write(f"""<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active><mhz>2000</mhz></cpu>
  <memory>4194304</memory>
  <domain type='test'>
    <name>quiet01</name>
    <uuid>5d1c7a10-2b3c-4d5e-8f90-a1b2c3d4e5f6</uuid>
    <memory>131072</memory><vcpu>1</vcpu><os><type>hvm</type></os>
    <devices><graphics type='vnc' port='{vnc_port}' autoport='no' listen='127.0.0.1'/></devices>
  </domain>
</node>
""")
        d = Armadad(["--idle-timeout-s", "2", "--ensure-host", f"legacy=test://{xml}"])
        ws = None
        try:
            d.start()
            d.token = d.login()
            vm = wait_until(lambda: next((v for v in d.ok("GET", "/api/v1/vms?name=quiet01")["items"]
                                          if v["state"] == "running"), None), 30, interval=0.2, what="the discovered VM")
            ws = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            ws.sendall((f"GET /api/v1/vms/{vm['id']}/console HTTP/1.1\r\nHost: 127.0.0.1:{d.port}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: binary\r\n"
                        f"Authorization: Bearer {d.token}\r\n\r\n").encode())
            buf = b""
            while b"RFB 003.008" not in buf:
                chunk = ws.recv(4096)
                self.assertTrue(chunk, f"the console closed before the VNC greeting: {buf!r}")
                buf += chunk
            self.assertTrue(buf.startswith(b"HTTP/1.1 101"), buf[:200])
            # Three idle timeouts without a byte either way.
            time.sleep(6)  # the quiet period is what is tested, not a wait for something
            wait_until(lambda: peers, 5, what="the VNC connection")
            peers[0].sendall(b"STILL-HERE")
            buf = b""
            while b"STILL-HERE" not in buf:
                chunk = ws.recv(4096)
                self.assertTrue(chunk, "armadad closed the quiet console")
                buf += chunk
        finally:
            if ws:
                ws.close()
            for c in peers:
                c.close()
            lis.close()
            d.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class TestStateFiles(unittest.TestCase):
    def test_files_private_in_an_open_directory(self):
        base = tempfile.mkdtemp(prefix="armada-perm-")
        try:
            state = os.path.join(base, "var")
            os.mkdir(state)
            os.chmod(state, 0o777)
            # The harness talks plain HTTP: start by hand, wait for the line.
            port = free_port()
            env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
            old = os.umask(0o022)
            try:
                p = subprocess.Popen([ARMADAD, "--state-dir", state, "--listen", f"127.0.0.1:{port}", "--tls-self-signed"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
            finally:
                os.umask(old)
            try:
                line = p.stdout.readline()
                while line and "listening" not in line:
                    line = p.stdout.readline()
                self.assertIn("listening", line)
                seen = []
                for root, dirs, files in os.walk(state):
                    for n in dirs:
                        path = os.path.join(root, n)
                        seen.append(path)
                        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o700, path)
                    for n in files:
                        path = os.path.join(root, n)
                        seen.append(path)
                        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)
                names = {os.path.relpath(s, state) for s in seen}
                for want in ("armada.db", "armada.db-wal", "armada.db-shm", "initial-admin-password", "tls",
                             "tls/armadad.crt", "tls/armadad.key"):
                    self.assertIn(want, names)
            finally:
                p.terminate()
                p.wait(20)
                p.stdout.close()
        finally:
            shutil.rmtree(base, ignore_errors=True)

    def test_existing_database_made_private(self):
        d = Armadad()
        if dbdirect.engine(d) != dbdirect.ENGINE_SQLITE:
            d.cleanup()
            self.skipTest("the database is a file only on SQLite")
        try:
            d.start()
            d.stop()
            db = os.path.join(d.dir, "var", "armada.db")
            os.chmod(db, 0o644)
            d.start()
            self.assertEqual(stat.S_IMODE(os.stat(db).st_mode), 0o600)
        finally:
            d.cleanup()


class TestSecretsAndMetrics(unittest.TestCase):
    """Fence commands and webhook URLs (which carry their tokens) are for
    administrators only; /metrics needs a token unless --metrics-public."""

    FENCE = ["fence_ipmilan", "--ip", "10.0.0.5", "--password", "s3cret-fence"]
    HOOK = "http://127.0.0.1:9/hook?token=s3cret-hook"

    @classmethod
    def setUpClass(cls):
        cls.d = Armadad().start()
        d = cls.d
        d.token = d.login()
        d.ok("POST", "/api/v1/host-groups", {"name": "Lab"})
        cls.host, _ = d.add_host("h1", "test:///default", group="Lab")
        d.ok("PATCH", f"/api/v1/hosts/{cls.host['id']}/fencing", {"command": cls.FENCE})
        cls.hook = d.ok("POST", "/api/v1/webhooks", {"url": cls.HOOK})
        d.ok("POST", "/api/v1/users", {"name": "ro", "password": "ro-password", "role": "read-only"})
        d.ok("POST", "/api/v1/users", {"name": "deleg", "password": "deleg-password", "role": "delegated-administrator",
                                       "scopes": ["Lab"]})
        cls.tokens = {"read-only": d.login("ro", "ro-password"), "delegated": d.login("deleg", "deleg-password")}

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def test_admin_reads_them(self):
        self.assertEqual(self.d.ok("GET", f"/api/v1/hosts/{self.host['id']}/fencing")["command"], self.FENCE)
        self.assertEqual(self.d.ok("GET", f"/api/v1/webhooks/{self.hook['id']}")["url"], self.HOOK)

    def test_others_never_see_them(self):
        hid = self.host["id"]
        for who, tok in self.tokens.items():
            for path in (f"/api/v1/hosts/{hid}/fencing", "/api/v1/webhooks", f"/api/v1/webhooks/{self.hook['id']}"):
                st, b = self.d.request("GET", path, token=tok)
                self.assertIn(st, (403, 404), (who, path, b))
                self.assertNotIn("s3cret", json.dumps(b), (who, path))
            # Nor anywhere else they may read.
            for path in (f"/api/v1/hosts/{hid}", "/api/v1/hosts", "/api/v1/events?limit=1000", "/api/v1/jobs",
                         "/api/v1/audit", "/api/v1/clusters", "/api/v1/health", "/api/v1/alerts"):
                st, b = self.d.request("GET", path, token=tok)
                self.assertNotIn("s3cret", json.dumps(b) if not isinstance(b, bytes) else b.decode(), (who, path))
            st, b = self.d.request("PATCH", f"/api/v1/hosts/{hid}/fencing", {"command": ["true"]}, token=tok)
            self.assertEqual(st, 403, (who, b))

    def test_metrics_need_an_administrator_token(self):
        for path in ("/metrics", "/api/v1/metrics"):
            st, _ = self.d.request("GET", path, auth=False)
            self.assertEqual(st, 401, path)
            st, _ = self.d.request("GET", path, token="0" * 64)
            self.assertEqual(st, 401, path)
            for who in ("delegated", "read-only"):
                st, _ = self.d.request("GET", path, token=self.tokens[who])
                self.assertEqual(st, 403, (who, path))
            st, body = self.d.request("GET", path)
            self.assertEqual(st, 200, path)
            self.assertIn(b"armada_login_rate_limited_total ", body)

    def test_metrics_public(self):
        d = Armadad(["--metrics-public"])
        try:
            d.start()
            st, body = d.request("GET", "/metrics", auth=False)
            self.assertEqual(st, 200, body)
            self.assertIn(b"armada_up 1", body)
        finally:
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
