"""Replication of a datastore to a second site, with two armadads: site A
(plain HTTP on loopback, as the harness runs it) replicates its datastore to
site B, which serves HTTPS with a certificate made here (A trusts it through
the replication's ca_file). Points are written by tests/unit/mkpoint, and
read back at B with `mkpoint --read` (point_read_disk(), what a restore
reads) to compare the bytes with the source images.

Covered: the first run sends every chunk; B lists the point (its datastore's
points and `backup list`); a second run sends nothing; a new point sends only
its new chunks; verify at B passes and B's copy of the disk equals the
source image; a chunk whose bytes do not match its digest is refused (400
"body", nothing stored); a point naming a missing chunk is refused (422
"chunks", nothing committed); a wrong token fails the run (401 named) and
a reader's token is 403 at B; a path target outside the backup roots is 400
"to_path"; replication to a directory; the schedule; the CLI."""
import os
import shutil
import ssl
import subprocess
import tempfile
import unittest
import urllib.request

import dbdirect
from armada_harness import ARMADA, BUILD, Armadad, wait_until

MKPOINT = os.path.join(BUILD, "tests", "unit", "mkpoint")
VM1 = "11111111-2222-3333-4444-555555555555"
MIB = 1 << 20


def image(path, seed, size=9 * MIB):
    """SIZE bytes: 4 MiB of bytes from seed, then zeros, then a 4 KiB tail."""
    block = bytes((seed * 31 + i * 7) % 251 for i in range(4096))
    with open(path, "wb") as f:
        f.write(block * (4 * MIB // 4096))
        f.truncate(size)
        f.seek(size - 4096)
        f.write(bytes(reversed(block)))


class HttpsArmadad(Armadad):
    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"


class ReplicateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-repl-it-")
        cls.root_a = os.path.join(cls.tmp, "a")
        cls.root_b = os.path.join(cls.tmp, "b")
        os.makedirs(cls.root_a)
        os.makedirs(cls.root_b)
        cls.cert = os.path.join(cls.tmp, "b.crt")
        key = os.path.join(cls.tmp, "b.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key,
                        "-out", cls.cert], check=True, capture_output=True, timeout=60)
        # The harness's urllib trusts B's certificate (A's own URL stays http).
        ctx = ssl.create_default_context(cafile=cls.cert)
        cls.old_opener = urllib.request._opener
        urllib.request.install_opener(urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx)))
        cls.a = cls.b = None
        try:
            cls.a = Armadad(["--backup-root", cls.root_a]).start()
            cls.a.token = cls.a.login()
            cls.b = HttpsArmadad(["--backup-root", cls.root_b, "--tls-cert", cls.cert, "--tls-key", key]).start()
            cls.b.token = cls.b.login()
            cls.b.request("POST", "/api/v1/users", {"name": "reader", "password": "password-reader", "role": "read-only"})
            cls.b_reader = cls.b.login("reader", "password-reader")
            cls.ds_a_dir = os.path.join(cls.root_a, "ds")
            cls.ds_b_dir = os.path.join(cls.root_b, "ds")
            cls.ds_a = cls.add_ds(cls.a, "site-a", cls.ds_a_dir)
            cls.ds_b = cls.add_ds(cls.b, "site-b", cls.ds_b_dir)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for d in (cls.a, cls.b):
            if d:
                d.cleanup()
        urllib.request.install_opener(cls.old_opener)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @staticmethod
    def add_ds(d, name, path):
        # 4 MiB chunks, as mkpoint makes a new directory's: the points move between them.
        r = d.ok("POST", "/api/v1/datastores", {"name": name, "path": path, "chunk_size": 4 * MIB})
        if r["job"]:
            assert d.wait_job(r["job"]["id"])["state"] == "succeeded"
        return r["datastore"]

    def mkpoint(self, directory, vm, point, img):
        r = subprocess.run([MKPOINT, directory, vm, point, "vda=" + img, "--name", "web01"], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [line for line in r.stdout.split() if line != "zero"]

    def replication(self, **body):
        r = self.a.ok("POST", "/api/v1/replications", dict({"source": "site-a"}, **body))
        self.addCleanup(self.a.request, "DELETE", f"/api/v1/replications/{r['id']}")
        return r

    def run_repl(self, rid, state="succeeded"):
        r = self.a.ok("POST", f"/api/v1/replications/{rid}/actions/run")
        job = self.a.wait_job(r["job"]["id"], timeout=120)
        self.assertEqual(job["state"], state, job)
        return job

    def to_b(self, **kw):
        tok = kw.pop("token", self.b.token)
        return self.replication(to_url=self.b.url, to_datastore="site-b", token=tok, ca_file=self.cert, **kw)

    def b_points(self):
        return {(p["vm_uuid"], p["point_id"]) for p in
                self.b.ok("GET", f"/api/v1/datastores/{self.ds_b['id']}/points")["items"]}

    def test_1_to_second_site(self):
        img1 = os.path.join(self.tmp, "img1.raw")
        image(img1, 1)
        chunks1 = self.mkpoint(self.ds_a_dir, VM1, "20260101T000000Z", img1)
        r = self.to_b(name="to-b")
        self.assertNotIn("token", r)
        listed = self.a.ok("GET", "/api/v1/replications")["items"]
        self.assertTrue(all("token" not in x for x in listed))

        # A run cut short after one chunk: that chunk is not sent again.
        first = chunks1[0]
        with open(os.path.join(self.ds_a_dir, ".chunks", first[:4], first), "rb") as f:
            st, b = self.b.request("POST", f"/api/v1/datastores/{self.ds_b['id']}/replica/chunks?digest={first}",
                                   raw=f.read(), headers={"Content-Type": "application/octet-stream"})
        self.assertEqual((st, b["stored"] > 0), (201, True), b)
        job = self.run_repl(r["id"])
        res = job["result"]
        self.assertEqual(res["points_sent"], 1, res)
        self.assertEqual(res["chunks_sent"], len(set(chunks1)) - 1, res)
        self.assertGreater(res["bytes_sent"], 0)
        self.assertIn((VM1, "20260101T000000Z"), self.b_points())
        pts = self.b.ok("GET", "/api/v1/backups?datastore=site-b")["items"]
        self.assertIn("20260101T000000Z", [p["point_id"] for p in pts])

        # Again: nothing to send.
        res = self.run_repl(r["id"])["result"]
        self.assertEqual((res["points_sent"], res["chunks_sent"], res["bytes_sent"]), (0, 0, 0), res)

        # A new point that differs from the first in its last chunk only.
        img2 = os.path.join(self.tmp, "img2.raw")
        shutil.copy(img1, img2)
        with open(img2, "r+b") as f:
            f.seek(9 * MIB - 100)
            f.write(b"site A changed this")
        chunks2 = self.mkpoint(self.ds_a_dir, VM1, "20260102T000000Z", img2)
        new = set(chunks2) - set(chunks1)
        self.assertEqual(len(new), 1)
        res = self.run_repl(r["id"])["result"]
        self.assertEqual((res["points_sent"], res["chunks_sent"]), (1, 1), res)
        self.assertEqual(res["points_total"], 2)

        # Site B alone: verify passes and the disk reads back as the source.
        v = self.b.ok("POST", f"/api/v1/datastores/{self.ds_b['id']}/actions/verify")
        self.assertTrue(self.b.wait_job(v["job"]["id"])["result"]["ok"])
        out = os.path.join(self.tmp, "restored.raw")
        p = subprocess.run([MKPOINT, "--read", self.ds_b_dir, VM1, "20260102T000000Z", "0", out], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out, "rb") as f1, open(img2, "rb") as f2:
            self.assertTrue(f1.read() == f2.read(), "B's copy differs from the source image")
        rows = self.a.ok("GET", "/api/v1/replications")["items"]
        row = [x for x in rows if x["name"] == "to-b"][0]
        self.assertEqual(row["last_state"], "succeeded")

    def test_corrupt_chunk_and_incomplete_point_refused(self):
        img = os.path.join(self.tmp, "img3.raw")
        image(img, 3)
        src = tempfile.mkdtemp(prefix="src-", dir=self.tmp)
        chunks = self.mkpoint(src, VM1, "20260301T000000Z", img)
        good, other = chunks[0], chunks[1]
        with open(os.path.join(src, ".chunks", other[:4], other), "rb") as f:
            other_bytes = f.read()
        ds = self.ds_b["id"]
        st, b = self.b.request("POST", f"/api/v1/datastores/{ds}/replica/chunks?digest={good}", raw=other_bytes,
                               headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 400, b)
        self.assertEqual(b["error"]["field"], "body")
        self.assertFalse(os.path.exists(os.path.join(self.ds_b_dir, ".chunks", good[:4], good)))
        st, b = self.b.request("POST", f"/api/v1/datastores/{ds}/replica/missing", {"digests": [good]})
        self.assertEqual((st, b["missing"]), (200, [good]))
        # Too big a body.
        st, b = self.b.request("POST", f"/api/v1/datastores/{ds}/replica/chunks?digest={good}", raw=b"x" * (5 * MIB),
                               headers={"Content-Type": "application/octet-stream"})
        self.assertEqual(st, 413, b)
        # A point naming chunks B lacks.
        size = os.path.getsize(img)
        zero = "0" * 64
        digests = "".join(c for c in [chunks[0], zero, chunks[1]])
        self.assertEqual(size, 9 * MIB)
        man = {"vm_uuid": VM1, "point_id": "20260301T000000Z", "meta": {"vm_name": "web01"},
               "disks": [{"target": "vda", "size": size, "digests": digests}]}
        before = self.b_points()
        st, b = self.b.request("POST", f"/api/v1/datastores/{ds}/replica/points", man)
        self.assertEqual(st, 422, b)
        self.assertEqual(b["error"]["field"], "chunks")
        self.assertEqual(self.b_points(), before)
        self.assertFalse(os.path.exists(os.path.join(self.ds_b_dir, "vm", VM1, "20260301T000000Z", "manifest.json")))

    def test_other_chunk_size_refused(self):
        """A target datastore of another chunk size: the run fails before
        sending anything, naming the sizes; a point pushed to it anyway is
        409 naming chunk_size (an older site's point, without chunk_size,
        counts as 4 MiB)."""
        img = os.path.join(self.tmp, "img6.raw")
        image(img, 6)
        chunks = self.mkpoint(self.ds_a_dir, VM1, "20260601T000000Z", img)
        r = self.b.ok("POST", "/api/v1/datastores", {"name": "site-b-256k", "path": os.path.join(self.root_b, "small"),
                                                     "chunk_size": 256 * 1024})
        small = r["datastore"]
        self.addCleanup(self.b.request, "DELETE", f"/api/v1/datastores/{small['id']}?force=true")
        rep = self.replication(name="to-small", to_url=self.b.url, to_datastore="site-b-256k", token=self.b.token,
                               ca_file=self.cert)
        job = self.run_repl(rep["id"], state="failed")
        self.assertIn("chunk size", job["error"])
        self.assertEqual(self.b.ok("GET", f"/api/v1/datastores/{small['id']}/points")["items"], [])
        self.assertEqual(os.listdir(os.path.join(self.root_b, "small", ".chunks")), [])
        man = {"vm_uuid": VM1, "point_id": "20260601T000000Z", "meta": {"vm_name": "web01"},
               "disks": [{"target": "vda", "size": 9 * MIB, "digests": chunks[0] + "0" * 64 + chunks[1]}]}
        st, b = self.b.request("POST", f"/api/v1/datastores/{small['id']}/replica/points", man)
        self.assertEqual((st, b["error"]["field"]), (409, "chunk_size"), b)
        self.assertFalse(os.path.exists(os.path.join(self.root_b, "small", "vm", VM1)))

    def test_same_pair_runs_take_turns(self):
        """Two replications of one source into one target directory, run at
        once: they take turns (the second waits, then finds every point there),
        so both succeed and every chunk is sent and counted once."""
        img = os.path.join(self.tmp, "img7.raw")
        with open(img, "wb") as f:
            f.write(os.urandom(48 * MIB))  # 12 chunks of 4 MiB: a copy that takes a while
        src = os.path.join(self.root_a, "twin-src")
        ds = self.add_ds(self.a, "twin-src", src)
        self.addCleanup(self.a.request, "DELETE", f"/api/v1/datastores/{ds['id']}?force=true")
        chunks = set(self.mkpoint(src, VM1, "20260701T000000Z", img)) | set(self.mkpoint(src, VM1, "20260702T000000Z", img))
        target = os.path.join(self.root_a, "twin-target")
        reps = []
        for name in ("twin-1", "twin-2"):
            r = self.a.ok("POST", "/api/v1/replications", {"source": "twin-src", "name": name, "to_path": target})
            self.addCleanup(self.a.request, "DELETE", f"/api/v1/replications/{r['id']}")
            reps.append(r)
        jobs = [self.a.ok("POST", f"/api/v1/replications/{r['id']}/actions/run")["job"]["id"] for r in reps]
        # A second run of the same replication while one is queued or running: 409.
        st, b = self.a.request("POST", f"/api/v1/replications/{reps[0]['id']}/actions/run")
        self.assertEqual(st, 409, b)
        done = [self.a.wait_job(j, timeout=120) for j in jobs]
        for j in done:
            self.assertEqual(j["state"], "succeeded", j)
        self.assertEqual(sum(j["result"]["points_sent"] for j in done), 2, [j["result"] for j in done])
        self.assertEqual(sum(j["result"]["chunks_sent"] for j in done), len(chunks), [j["result"] for j in done])
        self.assertEqual(sorted(os.listdir(os.path.join(target, "vm", VM1))), ["20260701T000000Z", "20260702T000000Z"])

    def test_tokens(self):
        st, b = self.b.request("POST", f"/api/v1/datastores/{self.ds_b['id']}/replica/missing", {"digests": []},
                               token="not-a-token")
        self.assertEqual(st, 401, b)
        st, b = self.b.request("POST", f"/api/v1/datastores/{self.ds_b['id']}/replica/missing", {"digests": []},
                               token=self.b_reader)
        self.assertEqual(st, 403, b)
        st, b = self.b.request("POST", f"/api/v1/datastores/{self.ds_b['id']}/replica/chunks?digest={'a' * 64}",
                               raw=b"abc", headers={"Content-Type": "application/octet-stream"}, token=self.b_reader)
        self.assertEqual(st, 403, b)
        r = self.to_b(name="bad-token", token="wrong-token-123")
        # Sealed at rest: the database never holds the token's text.
        db = dbdirect.connect(self.a)
        try:
            (stored,) = db.execute("SELECT token FROM replication WHERE id = ?", (r["id"],)).fetchone()
        finally:
            db.close()
        self.assertTrue(stored.startswith("sb1:"), stored)
        self.assertNotIn("wrong-token-123", stored)
        job = self.run_repl(r["id"], state="failed")
        self.assertIn("401", job["error"])
        self.assertNotIn("wrong-token-123", job["error"])
        self.assertNotIn("wrong-token-123", self.a.log_text())

    def test_bad_requests(self):
        st, b = self.a.request("POST", "/api/v1/replications", {"source": "site-a", "to_path": self.tmp + "/elsewhere"})
        self.assertEqual((st, b["error"]["field"]), (400, "to_path"), b)
        st, b = self.a.request("POST", "/api/v1/replications", {"source": "site-a", "to_path": self.ds_a_dir + "/x"})
        self.assertEqual((st, b["error"]["field"]), (400, "to_path"), b)
        st, b = self.a.request("POST", "/api/v1/replications", {"source": "site-a", "to_url": "http://example.com:80",
                                                                 "to_datastore": "x", "token": "t"})
        self.assertEqual((st, b["error"]["field"]), (400, "to_url"), b)
        st, b = self.a.request("POST", "/api/v1/replications", {"source": "nope", "to_path": self.root_a + "/r"})
        self.assertEqual((st, b["error"]["field"]), (404, "source"), b)
        st, b = self.a.request("POST", "/api/v1/replications", {"source": "site-a", "to_path": self.root_a + "/r",
                                                                 "every": 3})
        self.assertEqual((st, b["error"]["field"]), (400, "every"), b)
        self.assertEqual(self.a.ok("GET", "/api/v1/replications")["items"], [])

    def test_to_path_scheduled_and_cli(self):
        img = os.path.join(self.tmp, "img4.raw")
        image(img, 4)
        self.mkpoint(self.ds_a_dir, VM1, "20260401T000000Z", img)
        target = os.path.join(self.root_a, "mirror")
        r = self.replication(name="mirror", to_path=target, every=10)
        def ran():
            rows = [x for x in self.a.ok("GET", "/api/v1/replications")["items"] if x["id"] == r["id"]]
            return rows and rows[0]["last_state"] == "succeeded"
        wait_until(ran, 40, interval=0.5, what="the scheduled run")
        self.assertTrue(os.path.exists(os.path.join(target, "vm", VM1, "20260401T000000Z", "manifest.json")))

        home = tempfile.mkdtemp(prefix="home-", dir=self.tmp)
        env = dict(os.environ, HOME=home, ARMADA_URL=self.a.url, ARMADA_TOKEN=self.a.token, ASAN_OPTIONS="detect_leaks=0")

        def cli(*args):
            return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=120)
        tf = os.path.join(self.tmp, "token")
        with open(tf, "w") as f:
            f.write(self.b.token + "\n")
        p = cli("backup", "replicate", "add", "site-a", "--to-url", self.b.url, "--to-datastore", "site-b",
                "--token-file", tf, "--ca-file", self.cert, "--name", "viacli")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = cli("backup", "replicate", "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("viacli", p.stdout)
        self.assertNotIn(self.b.token, p.stdout)
        p = cli("backup", "replicate", "run", "viacli")
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
        self.assertIn("replication 'viacli':", p.stdout)
        self.assertIn((VM1, "20260401T000000Z"), self.b_points())
        p = cli("backup", "replicate", "remove", "viacli")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("viacli", cli("backup", "replicate", "list").stdout)


if __name__ == "__main__":
    unittest.main()
