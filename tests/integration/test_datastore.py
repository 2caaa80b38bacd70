"""Backup datastores against a real armadad (--backup-root on a temporary
directory): administrators only, the path rules (outside a root, '..', a
symbolic link that leads out, a missing parent), adopting a directory that
already is a datastore, the same path or name twice, nothing left made on a
refused request, verify naming a corrupted chunk's point (with its alert and
last_verified), remove refusing while points exist, prune, gc, archive,
verify of an archive by path, import, /metrics and the CLI.

Points are written by tests/unit/mkpoint (the chunk store's own writer): a
test:/// VM has no disks a backup could read."""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from armada_harness import ARMADA, BUILD, Armadad, raw_get

MKPOINT = os.path.join(BUILD, "tests", "unit", "mkpoint")
VM1 = "11111111-2222-3333-4444-555555555555"
VM2 = "aaaaaaaa-2222-3333-4444-555555555555"
MIB = 1 << 20


def image(path, seed, size=9 * MIB):
    """A file of SIZE bytes: 4 MiB of bytes from seed, then zeros, then a tail."""
    block = bytes((seed * 31 + i * 7) % 251 for i in range(4096))
    with open(path, "wb") as f:
        f.write(block * (4 * MIB // 4096))
        f.truncate(size)
        f.seek(size - 4096)
        f.write(bytes(reversed(block)))


class DatastoreTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-ds-it-")
        cls.root = os.path.join(cls.tmp, "root")
        cls.outside = os.path.join(cls.tmp, "outside")
        os.makedirs(cls.root)
        os.makedirs(cls.outside)
        os.symlink(cls.outside, os.path.join(cls.root, "escape"))
        cls.img1 = os.path.join(cls.tmp, "disk1.raw")
        cls.img2 = os.path.join(cls.tmp, "disk2.raw")
        image(cls.img1, 1)
        image(cls.img2, 2)
        cls.d = Armadad(["--backup-root", cls.root]).start()
        cls.d.token = cls.d.login()
        cls.d.request("POST", "/api/v1/users", {"name": "reader", "password": "password-reader", "role": "read-only"})
        cls.reader = cls.d.login("reader", "password-reader")

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def mkpoint(self, directory, vm, point, img, name="web01"):
        r = subprocess.run([MKPOINT, directory, vm, point, "vda=" + img, "--name", name], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [line for line in r.stdout.split() if line != "zero"]

    def refused(self, body, status, field, token=None):
        st, b = self.d.request("POST", "/api/v1/datastores", body, token=token)
        self.assertEqual(st, status, b)
        if field is not None:
            self.assertEqual(b["error"]["field"], field, b)
        return b

    def add(self, name, path, chunk_size=None):
        body = {"name": name, "path": path}
        if chunk_size:
            body["chunk_size"] = chunk_size
        r = self.d.ok("POST", "/api/v1/datastores", body)
        if r["job"]:
            self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        return r

    def run_job(self, ds_id, action, body=None):
        r = self.d.ok("POST", f"/api/v1/datastores/{ds_id}/actions/{action}", body)
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        return job["result"]

    def remove(self, ds_id):
        self.d.request("DELETE", f"/api/v1/datastores/{ds_id}?force=true")

    def test_admin_only(self):
        path = os.path.join(self.root, "by-reader")
        st, b = self.d.request("POST", "/api/v1/datastores", {"name": "r", "path": path}, token=self.reader)
        self.assertEqual(st, 403, b)
        self.assertFalse(os.path.exists(path))
        st, b = self.d.request("GET", "/api/v1/datastores", token=self.reader)
        self.assertEqual(st, 403, b)
        audit = self.d.ok("GET", "/api/v1/audit?limit=20")["items"]
        self.assertTrue(any(a["action"] == "add" and a["result"] == "denied" and a["object_kind"] == "datastore"
                            for a in audit), audit)

    def test_path_rules(self):
        self.refused({"name": "rel", "path": "relative/dir"}, 400, "path")
        self.refused({"name": "dots", "path": self.root + "/a/../b"}, 400, "path")
        self.refused({"name": "dot", "path": self.root + "/./b"}, 400, "path")
        b = self.refused({"name": "out", "path": os.path.join(self.outside, "ds")}, 400, "path")
        self.assertIn("backup root", b["error"]["message"])
        # A symbolic link inside the root that leads outside it.
        b = self.refused({"name": "esc", "path": os.path.join(self.root, "escape", "ds")}, 400, "path")
        self.assertNotIn(self.outside, b["error"]["message"])   # what it resolves to is not told
        self.refused({"name": "esc2", "path": os.path.join(self.root, "escape")}, 400, "path")
        # The root itself is not a datastore; a missing parent is not made.
        self.refused({"name": "rootds", "path": self.root}, 400, "path")
        self.refused({"name": "deep", "path": os.path.join(self.root, "no", "such", "dir")}, 422, "path")
        self.refused({"name": "bad name!", "path": os.path.join(self.root, "x")}, 400, "name")
        self.refused({"name": "x", "path": os.path.join(self.root, "x"), "extra": 1}, 400, None)
        # Nothing was made by any of them.
        for name in ("x", "no", "by-reader"):
            self.assertFalse(os.path.exists(os.path.join(self.root, name)), name)
        self.assertEqual(os.listdir(self.outside), [])

    def test_create_twice_and_not_empty(self):
        path = os.path.join(self.root, "fresh")
        r = self.add("fresh", path)
        self.assertFalse(r["adopted"])
        self.assertTrue(os.path.isfile(os.path.join(path, ".armada-datastore")))
        ds = r["datastore"]
        try:
            self.refused({"name": "fresh2", "path": path}, 409, "path")
            self.refused({"name": "fresh2", "path": path + "/"}, 409, "path")
            self.refused({"name": "inside", "path": os.path.join(path, "vm")}, 409, "path")
            self.refused({"name": "fresh", "path": os.path.join(self.root, "fresh3")}, 409, "name")
            self.assertFalse(os.path.exists(os.path.join(self.root, "fresh3")))
            listed = self.d.ok("GET", "/api/v1/datastores")["items"]
            mine = [x for x in listed if x["name"] == "fresh"][0]
            self.assertEqual(mine["usage"]["points"], 0)
            self.assertEqual(mine["usage"]["chunks"], 0)
        finally:
            self.remove(ds["id"])
        # A directory with other files: refused, left exactly as it was.
        other = os.path.join(self.root, "other")
        os.makedirs(other)
        with open(os.path.join(other, "precious.txt"), "w") as f:
            f.write("keep me")
        self.refused({"name": "other", "path": other}, 422, "path")
        self.assertEqual(os.listdir(other), ["precious.txt"])
        self.assertNotIn("other", self.names())

    def test_adopt_verify_corrupt_remove(self):
        path = os.path.join(self.root, "adopt")
        c1 = self.mkpoint(path, VM1, "20260101T000000Z", self.img1)
        c2 = self.mkpoint(path, VM2, "20260102T000000Z", self.img2, name="db01")
        r = self.add("adopt", path)
        self.assertTrue(r["adopted"])
        ds = r["datastore"]
        try:
            points = self.d.ok("GET", f"/api/v1/datastores/{ds['id']}/points")["items"]
            self.assertEqual([(p["vm_uuid"], p["point_id"]) for p in points],
                             [(VM1, "20260101T000000Z"), (VM2, "20260102T000000Z")])
            self.assertEqual(points[0]["meta"]["vm_name"], "web01")
            self.assertIsNone(points[0]["last_verified"])
            usage = self.d.ok("GET", f"/api/v1/datastores/{ds['id']}")["usage"]
            self.assertEqual(usage["points"], 2)
            self.assertEqual(usage["logical_bytes"], 18 * MIB)
            self.assertEqual(usage["chunks"], len(set(c1 + c2)))

            # A clean verify first.
            res = self.run_job(ds["id"], "verify")
            self.assertTrue(res["ok"], res)
            self.assertEqual(res["bad_points"], [])

            # Corrupt a chunk only VM2's point uses: verify names that point.
            only2 = [c for c in c2 if c not in c1][0]
            chunk = os.path.join(path, ".chunks", only2[:4], only2)
            with open(chunk, "r+b") as f:
                f.seek(os.path.getsize(chunk) // 2)
                b = f.read(1)
                f.seek(-1, os.SEEK_CUR)
                f.write(bytes([b[0] ^ 0xFF]))
            res = self.run_job(ds["id"], "verify")
            self.assertFalse(res["ok"])
            self.assertEqual(len(res["bad_points"]), 1, res)
            bad = res["bad_points"][0]
            self.assertEqual((bad["vm_uuid"], bad["point_id"], bad["disk"], bad["reason"], bad["digest"]),
                             (VM2, "20260102T000000Z", "vda", "corrupt", only2))
            points = {p["vm_uuid"]: p for p in self.d.ok("GET", f"/api/v1/datastores/{ds['id']}/points")["items"]}
            self.assertTrue(points[VM1]["last_verified"]["ok"])
            self.assertFalse(points[VM2]["last_verified"]["ok"])
            alerts = self.d.ok("GET", "/api/v1/alerts?state=open")["items"]
            mine = [a for a in alerts if a.get("object_kind") == "datastore" and a.get("object_id") == ds["id"]]
            self.assertEqual(len(mine), 1, alerts)
            self.assertIn("20260102T000000Z", mine[0]["message"])
            events = self.d.ok("GET", "/api/v1/events?limit=500")["items"]
            self.assertTrue(any(e["kind"] == "datastore.verify-failed" and VM2 in e["message"] for e in events))

            # The CLI says the same and exits 1.
            env = self.cli_env()
            r = subprocess.run([ARMADA, "backup", "verify", "adopt"], capture_output=True, text=True, env=env,
                               timeout=120)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(f"cannot be restored: {VM2}/20260102T000000Z", r.stdout)

            # Remove refuses while points exist; force forgets, files stay.
            st, b = self.d.request("DELETE", f"/api/v1/datastores/{ds['id']}")
            self.assertEqual(st, 409, b)
            self.d.ok("DELETE", f"/api/v1/datastores/{ds['id']}?force=true")
            self.assertTrue(os.path.isfile(chunk))
            self.assertEqual(len(glob.glob(os.path.join(path, "vm", "*", "*", "manifest.json"))), 2)
            # Adopting it again brings its points back.
            ds = self.add("adopt", path)["datastore"]
            self.assertEqual(len(self.d.ok("GET", f"/api/v1/datastores/{ds['id']}/points")["items"]), 2)
        finally:
            self.remove(ds["id"])

    def names(self):
        return [x["name"] for x in self.d.ok("GET", "/api/v1/datastores")["items"]]

    def test_list_by_name(self):
        r = self.add("byname", os.path.join(self.root, "byname"))
        try:
            self.assertEqual([x["name"] for x in self.d.ok("GET", "/api/v1/datastores?name=byname")["items"]],
                             ["byname"])
            self.assertEqual(self.d.ok("GET", "/api/v1/datastores?name=nope")["items"], [])
        finally:
            self.remove(r["datastore"]["id"])

    def cli_env(self):
        home = tempfile.mkdtemp(prefix="armada-ds-home-", dir=self.tmp)
        return dict(os.environ, HOME=home, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token,
                    ASAN_OPTIONS="detect_leaks=0")

    def test_prune_gc_archive_import(self):
        path = os.path.join(self.root, "life")
        for day in ("20260101T010000Z", "20260102T010000Z", "20260103T010000Z", "20260103T020000Z"):
            self.mkpoint(path, VM1, day, self.img1 if day != "20260103T020000Z" else self.img2)
        ds = self.add("life", path)["datastore"]
        archive = os.path.join(self.root, "tape1")
        other_path = os.path.join(self.root, "site2")
        other = None
        try:
            # Prune: a dry run removes nothing.
            res = self.run_job(ds["id"], "prune", {"keep_daily": 2, "dry_run": True})
            self.assertEqual(sorted(p["point_id"] for p in res["kept"]), ["20260102T010000Z", "20260103T020000Z"])
            self.assertEqual(sorted(p["point_id"] for p in res["removed"]), ["20260101T010000Z", "20260103T010000Z"])
            self.assertEqual(len(self.d.ok("GET", f"/api/v1/datastores/{ds['id']}/points")["items"]), 4)
            st, b = self.d.request("POST", f"/api/v1/datastores/{ds['id']}/actions/prune", {"dry_run": True})
            self.assertEqual((st, b["error"]["field"]), (400, "keep_last"))
            st, b = self.d.request("POST", f"/api/v1/datastores/{ds['id']}/actions/prune",
                                   {"keep_last": 1, "vm": "no-such-vm"})
            self.assertEqual((st, b["error"]["field"]), (422, "vm"))
            res = self.run_job(ds["id"], "prune", {"keep_daily": 2, "vm": VM1})
            self.assertEqual(len(res["removed"]), 2)
            points = self.d.ok("GET", f"/api/v1/datastores/{ds['id']}/points")["items"]
            self.assertEqual([p["point_id"] for p in points], ["20260102T010000Z", "20260103T020000Z"])

            # GC: nothing is unreferenced (img1's chunks are still used);
            # an old chunk no point names goes, a fresh one stays.
            stray_img = os.path.join(self.tmp, "disk-stray.raw")
            image(stray_img, 99, size=4 * MIB)
            stray = self.mkpoint(path, VM2, "20260104T000000Z", stray_img)
            manifest = os.path.join(path, "vm", VM2, "20260104T000000Z", "manifest.json")
            os.unlink(manifest)                       # a point that never committed
            old = time.time() - 3600
            for c in stray:
                os.utime(os.path.join(path, ".chunks", c[:4], c), (old, old))
            res = self.run_job(ds["id"], "gc")
            self.assertEqual(res["chunks_removed"], len(set(stray)), res)
            for c in stray:
                self.assertFalse(os.path.exists(os.path.join(path, ".chunks", c[:4], c)))
            self.assertTrue(self.run_job(ds["id"], "verify")["ok"])

            # Archive VM1's points into a new directory; verify it by path.
            st, b = self.d.request("POST", f"/api/v1/datastores/{ds['id']}/actions/archive",
                                   {"vm": VM1, "to": os.path.join(self.outside, "tape")})
            self.assertEqual((st, b["error"]["field"]), (400, "to"))
            st, b = self.d.request("POST", f"/api/v1/datastores/{ds['id']}/actions/archive",
                                   {"vm": VM1, "point": VM1 + "/x", "to": archive})
            self.assertEqual(st, 400, b)
            self.assertFalse(os.path.exists(archive))
            res = self.run_job(ds["id"], "archive", {"point": VM1 + "/20260102T010000Z", "to": archive})
            self.assertEqual(res["points"], 1)
            first_sent = res["chunks_sent"]
            self.assertGreater(first_sent, 0)
            res = self.run_job(ds["id"], "archive", {"vm": VM1, "to": archive})
            self.assertEqual(res["points"], 2)
            self.assertLess(res["chunks_sent"], first_sent + 3)   # only the second point's new chunks
            r = self.d.ok("POST", "/api/v1/datastores/verify-path", {"path": archive})
            job = self.d.wait_job(r["job"]["id"])
            self.assertEqual(job["state"], "succeeded", job)
            self.assertTrue(job["result"]["ok"])
            self.assertEqual(job["result"]["points"], 2)

            # Import it into a second datastore: every point, chunks once.
            other = self.add("site2", other_path, chunk_size=4 * MIB)["datastore"]  # the archive's (mkpoint's) size
            st, b = self.d.request("POST", f"/api/v1/datastores/{other['id']}/actions/import",
                                   {"path": self.outside})
            self.assertEqual((st, b["error"]["field"]), (400, "path"))
            res = self.run_job(other["id"], "import", {"path": archive})
            self.assertEqual(res["points"], 2)
            self.assertGreater(res["chunks_sent"], 0)
            res = self.run_job(other["id"], "import", {"path": archive})
            self.assertEqual(res["chunks_sent"], 0)
            usage = self.d.ok("GET", f"/api/v1/datastores/{other['id']}")["usage"]
            self.assertEqual(usage["points"], 2)
            self.assertGreater(usage["dedup_factor"], 1.0)
            self.assertTrue(self.run_job(other["id"], "verify")["ok"])

            # /metrics shows the cached usage.
            st, _, body = raw_get(self.d, "/metrics", self.d.token)
            text = body.decode()
            self.assertIn('armada_datastore_points{datastore="site2"} 2', text)
        finally:
            self.remove(ds["id"])
            if other:
                self.remove(other["id"])

    def test_chunk_size(self):
        """A datastore's chunk size: chosen at add (400 naming chunk_size for
        a size it cannot cut), kept in its marker and listed, kept when
        adopted (409 for another), and points move only between datastores
        of the same size (import, archive: 409 naming chunk_size)."""
        path = os.path.join(self.root, "small")
        for bad in (3000000, 8 * MIB, 128 * 1024, 1):
            self.refused({"name": "small", "path": path, "chunk_size": bad}, 400, "chunk_size")
        self.refused({"name": "small", "path": path, "chunk_size": "1M"}, 400, "chunk_size")
        self.refused({"name": "small", "path": path, "chunk_size": 0}, 422, "chunk_size")
        self.assertFalse(os.path.exists(path))
        # Without chunk_size: the default, 256 KiB.
        dflt = self.add("dflt", os.path.join(self.root, "dflt"))["datastore"]
        self.assertEqual(dflt["chunk_size"], 256 * 1024)
        self.remove(dflt["id"])
        ds = self.add_sized("small", path, 256 * 1024)["datastore"]
        big_path = os.path.join(self.root, "big4m")
        tape = os.path.join(self.root, "tape-small")
        try:
            self.assertEqual(ds["chunk_size"], 256 * 1024)
            with open(os.path.join(path, ".armada-datastore")) as f:
                self.assertEqual(json.load(f)["chunk_size"], 256 * 1024)
            listed = [x for x in self.d.ok("GET", "/api/v1/datastores")["items"] if x["name"] == "small"]
            self.assertEqual(listed[0]["chunk_size"], 256 * 1024)
            # A point cut at 256 KiB: 9 MiB is 36 chunks, 17 of them data.
            chunks = self.mkpoint(path, VM1, "20260107T000000Z", self.img1)
            self.assertEqual(len(chunks), 17)
            self.assertTrue(self.run_job(ds["id"], "verify")["ok"])
            out = os.path.join(self.tmp, "small-back.raw")
            r = subprocess.run([MKPOINT, "--read", path, VM1, "20260107T000000Z", "0", out], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out, "rb") as a, open(self.img1, "rb") as b:
                self.assertEqual(a.read(), b.read())

            # Adopted: keeps its own size; asking for another is 409.
            self.remove(ds["id"])
            b = self.refused({"name": "small", "path": path, "chunk_size": MIB}, 409, "chunk_size")
            self.assertIn("256 KiB", b["error"]["message"])
            self.assertEqual(self.d.ok("GET", "/api/v1/datastores?name=small")["items"], [])
            r = self.add("small", path)
            ds = r["datastore"]
            self.assertTrue(r["adopted"])
            self.assertEqual(ds["chunk_size"], 256 * 1024)

            # Import from a 4 MiB datastore: refused before any job.
            self.mkpoint(big_path, VM2, "20260108T000000Z", self.img2)
            st, b = self.d.request("POST", f"/api/v1/datastores/{ds['id']}/actions/import", {"path": big_path})
            self.assertEqual((st, b["error"]["field"]), (409, "chunk_size"), b)
            self.assertEqual(len(self.d.ok("GET", f"/api/v1/datastores/{ds['id']}/points")["items"]), 1)
            # Archive into a 4 MiB datastore: refused; into a new directory:
            # an archive of 256 KiB chunks that verifies.
            st, b = self.d.request("POST", f"/api/v1/datastores/{ds['id']}/actions/archive", {"vm": VM1, "to": big_path})
            self.assertEqual((st, b["error"]["field"]), (409, "chunk_size"), b)
            self.assertFalse(os.path.exists(os.path.join(big_path, "vm", VM1)))
            self.assertEqual(self.run_job(ds["id"], "archive", {"vm": VM1, "to": tape})["points"], 1)
            with open(os.path.join(tape, ".armada-datastore")) as f:
                self.assertEqual(json.load(f)["chunk_size"], 256 * 1024)
            r = self.d.ok("POST", "/api/v1/datastores/verify-path", {"path": tape})
            job = self.d.wait_job(r["job"]["id"])
            self.assertTrue(job["result"]["ok"], job)
            # A replica directory of another size: 409 at add.
            st, b = self.d.request("POST", "/api/v1/replications", {"source": "small", "to_path": big_path})
            self.assertEqual((st, b["error"]["field"]), (409, "chunk_size"), b)
            self.assertEqual(self.d.ok("GET", "/api/v1/replications")["items"], [])
        finally:
            self.remove(ds["id"])

    def add_sized(self, name, path, chunk_size):
        r = self.d.ok("POST", "/api/v1/datastores", {"name": name, "path": path, "chunk_size": chunk_size})
        if r["job"]:
            self.assertEqual(self.d.wait_job(r["job"]["id"])["state"], "succeeded")
        return r

    def test_cli_datastore(self):
        env = self.cli_env()
        path = os.path.join(self.root, "viacli")

        def cli(*args):
            return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=120)
        self.mkpoint(path, VM1, "20260105T000000Z", self.img1)
        self.mkpoint(path, VM1, "20260106T000000Z", self.img2)
        r = cli("backup", "datastore", "add", "viacli", "--path", path, "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("datastore 'viacli' adopted with its points", r.stdout)
        r = cli("backup", "prune", "viacli", "--vm", VM1, "--keep-last", "1", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"web01\s+20260106T000000Z\s+keep")
        self.assertRegex(r.stdout, r"web01\s+20260105T000000Z\s+would remove")
        self.assertEqual(len(glob.glob(os.path.join(path, "vm", VM1, "*", "manifest.json"))), 2)
        r = cli("backup", "prune", "viacli", "--keep-last", "x")
        self.assertEqual(r.returncode, 1)
        r = cli("backup", "datastore", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("viacli", r.stdout)
        r = cli("backup", "datastore", "add", "bad", "--path", "/etc/armada-nope")
        self.assertEqual(r.returncode, 1)
        self.assertIn("backup root", r.stderr)
        # --chunk-size: a size the server takes, and one it refuses (naming it).
        small = os.path.join(self.root, "viacli-1m")
        r = cli("backup", "datastore", "add", "viacli1m", "--path", small, "--chunk-size", "1M", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.d.ok("GET", "/api/v1/datastores?name=viacli1m")["items"][0]["chunk_size"], MIB)
        r = cli("backup", "datastore", "list")
        self.assertRegex(r.stdout, r"viacli1m\s+\S+\s+1 MiB")
        r = cli("backup", "datastore", "add", "viacli3m", "--path", small + "-3", "--chunk-size", "3M")
        self.assertEqual(r.returncode, 1)
        self.assertIn("chunk_size", r.stderr)
        self.assertFalse(os.path.exists(small + "-3"))
        r = cli("backup", "datastore", "add", "viacli3m", "--path", small + "-3", "--chunk-size", "lots")
        self.assertEqual(r.returncode, 1)
        r = cli("backup", "datastore", "remove", "viacli1m", "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = cli("backup", "verify", "viacli")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = cli("backup", "datastore", "remove", "viacli")
        self.assertEqual(r.returncode, 1)
        self.assertIn("holds 2 recovery points", r.stderr)
        r = cli("backup", "datastore", "remove", "viacli", "--force")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("viacli", self.names())
        self.assertTrue(os.path.isfile(os.path.join(path, ".armada-datastore")))


if __name__ == "__main__":
    unittest.main()
