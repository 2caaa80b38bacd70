"""Test harness: runs a real armadad on a temporary state directory and a
free loopback port, and talks to its REST API. Used by the integration
(libvirt test driver) and system (test-bed hosts) suites."""
import http.client
import json
import os
import sys
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import openapi_check

ROOT = os.environ.get("ARMADA_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BUILD = os.environ.get("ARMADA_BUILD", os.path.join(ROOT, "build-check"))
ARMADAD = os.path.join(BUILD, "src", "daemon", "armadad")
ARMADA = os.path.join(BUILD, "src", "cli", "armada")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_until(pred, timeout, interval=0.05, what="condition"):
    """Polls pred() until it returns a truthy value; raises after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)



def raw_get(d, path, token, headers=None):
    """GET without the harness's decoding: (status, headers, body bytes)."""
    c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=30)
    h = {"Authorization": "Bearer " + token}
    h.update(headers or {})
    c.request("GET", path, headers=h)
    r = c.getresponse()
    body = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, body


def all_pages(d, path, token=None, limit=7, between=None, cursor=None, max_pages=1000):
    """Every item of path, page by page from cursor (None: the first page):
    (items, pages read). between(page_no) runs after each page but the last."""
    items, pages = [], 0
    sep = "&" if "?" in path else "?"
    while pages < max_pages:
        q = f"{path}{sep}limit={limit}" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        body = d.ok("GET", q, token=token)
        assert len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            return items, pages
        if between:
            between(pages)
    raise AssertionError(f"{path}: the pages do not end")

class ApiError(Exception):
    pass


class Armadad:
    """allow_test_hosts passes --allow-test-hosts: the integration suite's
    hosts are libvirt test-driver URIs (test:///...), which armadad refuses
    without it. Unless args give --v2v, armadad runs with --v2v never: a
    virt-v2v run takes a minute or more under TCG, and only the tests of
    that wiring (test_v2v*) want it. Unless args give --lease-ttl, the
    manager lease is 30 s (see below)."""
    def __init__(self, args=(), state_dir=None, allow_test_hosts=True):
        self.args = list(args) + (["--allow-test-hosts"] if allow_test_hosts else [])
        if "--v2v" not in self.args:
            self.args += ["--v2v", "never"]
        # A lone manager whose store does not answer for a whole lease (6 s)
        # demotes itself, as it must; on a machine loaded by tests running
        # side by side that is a 503 `standby` in a test about something
        # else. Tests of the lease give their own --lease-ttl.
        if "--lease-ttl" not in self.args:
            self.args += ["--lease-ttl", "30s"]
        self.own_dir = state_dir is None
        self.dir = state_dir or tempfile.mkdtemp(prefix="armada-test-")
        self.port = None
        self.proc = None
        self.token = None
        self.pg_db = None       # the PostgreSQL database of this daemon (ARMADA_TEST_STORE=postgresql)
        self.request_timeout = 30  # seconds an API request may take

    # -- process --
    def _store_args(self):
        """--db for ARMADA_TEST_STORE=postgresql: one database per state
        directory (a restart with the same directory finds its data),
        created on first use and dropped by cleanup() with the directory."""
        if os.environ.get("ARMADA_TEST_STORE") != "postgresql" or "--db" in self.args:
            return []
        import pgcluster
        pg = pgcluster.from_env()
        marker = os.path.join(self.dir, "pg-database")
        if os.path.exists(marker):
            with open(marker) as f:
                self.pg_db = f.read().strip()
        else:
            self.pg_db = pg.createdb()
            with open(marker, "w") as f:
                f.write(self.pg_db)
        return ["--db", pg.url(self.pg_db)]

    def start(self):
        env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:fast_unwind_on_fatal=0")
        self.log = open(os.path.join(self.dir, "armadad.log"), "ab")
        store = self._store_args()
        # free_port() closes its socket before armadad binds the port, so
        # another process (tests run side by side: tests/run-all --jobs) may
        # take it first: armadad then cannot listen and is started again on
        # another port. Until this armadad says it listens, whatever answers
        # on the port is someone else.
        for attempt in range(5):
            self.port = free_port()
            self.log.flush()
            mark = os.path.getsize(os.path.join(self.dir, "armadad.log"))
            self.proc = subprocess.Popen([ARMADAD, "--state-dir", os.path.join(self.dir, "var"),
                                          "--listen", f"127.0.0.1:{self.port}", "--refresh-interval-ms", "500",
                                          "--stop-timeout-s", "3"] + store + self.args,
                                         stdout=self.log, stderr=self.log, env=env, cwd=self.dir)
            # 60 s: migrations on a store shared by many tests, on a loaded machine.
            if wait_until(lambda: self._listening(mark), 60, what="armadad to listen") == "listens":
                break
            self.log.write(f"[harness] port {self.port} was taken; starting again\n".encode())
            self.log.flush()
        wait_until(lambda: self._answers(), 20, what="armadad to answer")
        return self

    def _listening(self, mark):
        """"listens" once this run of armadad (its log from offset mark)
        says so, "retry" when it could not bind its port; raises if it
        exited otherwise."""
        with open(os.path.join(self.dir, "armadad.log"), "rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        if "armadad: listening on " in text:
            return "listens"
        if self.proc.poll() is not None:
            if f"cannot listen on 127.0.0.1:{self.port}" in text:
                return "retry"
            raise AssertionError(f"armadad exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
        return None

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"armadad exited with {self.proc.returncode}: {self.log_text()[-3000:]}")
        try:
            return self.request("GET", "/api/v1/version", auth=False)[0] == 200
        except OSError:
            return False

    def log_text(self):
        with open(os.path.join(self.dir, "armadad.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("armadad did not stop within %ss of signal %s" % (timeout, sig))
        rc = self.proc.returncode if self.proc else 0
        if self.proc:
            self.log.close()
        self.proc = None
        return rc

    def cleanup(self):
        try:
            if self.proc and self.proc.poll() is not None:
                # It died under the tests: what it said is the only clue left.
                sys.stderr.write(f"armadad exited with {self.proc.returncode} during the tests; its log ends:\n"
                                 f"{self.log_text()[-6000:]}\n")
            if self.proc and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if getattr(self, "log", None) and not self.log.closed:
                self.log.close()
        finally:
            if os.environ.get("ARMADA_KEEP_LOGS") and os.path.exists(os.path.join(self.dir, "armadad.log")):
                # For a developer chasing a failure: the log outlives the run.
                shutil.copy(os.path.join(self.dir, "armadad.log"), os.environ["ARMADA_KEEP_LOGS"])
            if self.own_dir:
                if self.pg_db:
                    import pgcluster
                    try:
                        pgcluster.from_env().dropdb(self.pg_db)
                    except Exception as e:
                        sys.stderr.write(f"cannot drop the test database {self.pg_db}: {e}\n")
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.cleanup()

    # -- API --
    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def admin_password(self):
        with open(os.path.join(self.dir, "var", "initial-admin-password")) as f:
            name, pw = f.read().split()
        return name, pw

    def request(self, method, path, body=None, token=None, auth=True, raw=None, headers=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        tok = token if token is not None else self.token
        if auth and tok:
            req.add_header("Authorization", "Bearer " + tok)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=self.request_timeout) as resp:
                text = resp.read()
                ctype = resp.headers.get("Content-Type", "")
                st, out = resp.status, (json.loads(text) if text.strip() and ctype.startswith("application/json") else text)
        except urllib.error.HTTPError as e:
            text = e.read()
            ctype = e.headers.get("Content-Type", "") if e.headers else ""
            try:
                st, out = e.code, json.loads(text)
            except ValueError:
                st, out = e.code, text
        sent = body
        if raw is not None:
            try:
                sent = json.loads(raw)
            except ValueError:
                sent = None
        openapi_check.check(method, path, sent, st, out, ctype)
        return st, out

    def login(self, name=None, password=None):
        if name is None:
            name, password = self.admin_password()
        st, body = self.request("POST", "/api/v1/sessions", {"name": name, "password": password}, auth=False)
        if st != 201:
            raise ApiError(f"login as {name} failed: {st} {body}")
        return body["token"]

    def ok(self, method, path, body=None, token=None, expect=(200, 201, 202, 204)):
        st, b = self.request(method, path, body, token=token)
        if st not in expect:
            raise ApiError(f"{method} {path} -> {st} {b}")
        return b

    def wait_job(self, job_id, timeout=60, token=None):
        def done():
            j = self.ok("GET", f"/api/v1/jobs/{job_id}", token=token)
            return j if j["state"] not in ("queued", "running") else None
        return wait_until(done, timeout, interval=0.1, what=f"job {job_id} to end")

    def find(self, kind, name, token=None):
        q = "path" if kind == "host-groups" else "name"
        items = self.ok("GET", f"/api/v1/{kind}?{q}={urllib.request.quote(name)}", token=token)["items"]
        return items[0] if items else None

    def add_host(self, name, uri, group=None, **kw):
        body = {"name": name, "uri": uri}
        if group:
            body["group"] = group
        body.update(kw)
        r = self.ok("POST", "/api/v1/hosts", body)
        job = self.wait_job(r["job"]["id"])
        return r["host"], job

    def test_node_uri(self, name, cpus=16, memory_mib=65536, domains=""):
        """A test:///PATH.xml URI of a fake hypervisor of its own (written
        into this armadad's directory). Every test:///default connection of
        one process is the same hypervisor, which Armada registers once, so
        a second test host needs one of these."""
        path = os.path.join(self.dir, f"node-{name}.xml")
        with open(path, "w") as f:
            f.write(f"<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>"
                    f"<cores>{cpus}</cores><threads>1</threads><active>{cpus}</active></cpu>"
                    f"<memory>{memory_mib * 1024}</memory>{domains}</node>\n")
        return "test://" + path

    def create_vm(self, name, host, wait=True, **kw):
        # force: a named host must have the VM's memory unless an
        # administrator forces it, and test:///default never has (its
        # built-in 8 GiB domain "test" runs on a 3 GiB node). Pass
        # force=False to have the memory checked.
        body = {"name": name, "host": host, "cpus": 1, "memory_mib": 64, "force": True}
        body.update(kw)
        if not body["force"]:
            del body["force"]
        r = self.ok("POST", "/api/v1/vms", body)
        if wait:
            job = self.wait_job(r["job"]["id"])
            if job["state"] != "succeeded":
                raise ApiError(f"create {name} failed: {job['error']}")
        return r["vm"]

    def vm_action(self, vm_id, action, body=None):
        r = self.ok("POST", f"/api/v1/vms/{vm_id}/actions/{action}", body)
        return self.wait_job(r["job"]["id"])

    def vm(self, vm_id):
        return self.ok("GET", f"/api/v1/vms/{vm_id}")

    def count(self, kind):
        return len(self.ok("GET", f"/api/v1/{kind}")["items"])
