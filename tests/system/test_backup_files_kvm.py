"""System test of file-level restore on real QEMU through the namespace test
bed: a VM whose disks hold known files -- vda an ext4 file system on the
whole disk, vdb a partition table with one ext4 partition, both made here
with mkfs.ext4 -d (no mount, no root needed) and converted to qcow2 -- is
backed up while it runs; nothing is restored. Then, through the API and the
CLI, the point's file systems are listed, a directory of each, and files are
downloaded and compared by SHA-256 (one spans several 4 MiB chunks), each
read from the chunk store through armadad's NBD export and libguestfs's
appliance (TCG when /dev/kvm cannot be used). Also: a file that is not there
(404), a directory downloaded (422), the audit record, and that the
requests on one disk share one session (one appliance boot).

Skips with the reason when libguestfs's appliance cannot start here."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_bed import ArmadaBed  # noqa: E402
from armada_harness import ARMADA, wait_until  # noqa: E402
from testbed import skip_reason  # noqa: E402

MIB = 1 << 20
# The appliance boots with a point's first request: under TCG on a loaded
# machine minutes (armadad waits up to 900 s for it).
FILES_TIMEOUT = 960


def sha(b):
    return hashlib.sha256(b).hexdigest()


def make_tree(root, seed):
    """Known files: returns {path inside the file system: bytes}."""
    import random
    rnd = random.Random(seed)
    files = {
        "/etc/hostname": f"files-{seed}\n".encode(),
        "/data/big.bin": bytes(rnd.getrandbits(8) for _ in range(9 * MIB + 12345)),  # spans three 4 MiB chunks
        "/data/notes.txt": b"the quick brown fox\n" * 100,
        "/data/sub/deep.txt": b"deep\n",
    }
    for p, b in files.items():
        full = root + p
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(b)
    os.symlink("/etc/hostname", root + "/data/link")
    return files


class TestBackupFilesKvm(unittest.TestCase):
    ab = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        for tool in ("mkfs.ext4", "sfdisk", "qemu-img"):
            if not shutil.which(tool):
                raise unittest.SkipTest(f"{tool} is not installed")
        from guest import GuestUnavailable, build_disk_guest
        try:
            cls.kernel, cls.initrd = build_disk_guest()
        except GuestUnavailable as e:
            raise unittest.SkipTest(f"no disk guest: {e}")
        st = os.statvfs(tempfile.gettempdir())
        if st.f_bavail * st.f_frsize < 2 << 30:
            raise unittest.SkipTest("less than 2 GiB free for disks and the datastore")
        with open("/proc/meminfo") as f:
            avail = int([ln.split()[1] for ln in f if ln.startswith("MemAvailable:")][0]) * 1024
        if avail < 1536 * MIB:
            raise unittest.SkipTest("less than 1.5 GiB of memory free for the guest and the appliance")
        cls.tmp = tempfile.mkdtemp(prefix="armada-files-sys-")
        cls.root = os.path.join(cls.tmp, "root")
        os.makedirs(cls.root)
        cls.ab = ArmadaBed(1, cluster=False, extra_args=["--backup-root", cls.root]).__enter__()
        try:
            cls._populate()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.ab:
            cls.ab.bed.virsh("h1", "destroy", "fl1", check=False)
            for cp in cls.ab.bed.virsh("h1", "checkpoint-list", "fl1", "--name", check=False).split():
                cls.ab.bed.virsh("h1", "checkpoint-delete", "fl1", cp, "--metadata", check=False)
            cls.ab.bed.virsh("h1", "undefine", "fl1", "--checkpoints-metadata", check=False)
            cls.ab.__exit__(None, None, None)
            cls.ab = None
        # A session's child may still be ending (it removes its own work
        # directory, elsewhere) while the tree goes: remove what is left.
        for _ in range(3):
            shutil.rmtree(cls.tmp, ignore_errors=True)
            if not os.path.exists(cls.tmp):
                break

    @classmethod
    def _populate(cls):
        from guest import disk_guest_xml
        ab, tmp = cls.ab, cls.tmp
        d = ab.d
        r = d.ok("POST", "/api/v1/datastores", {"name": "ds1", "path": os.path.join(cls.root, "ds1")})
        assert d.wait_job(r["job"]["id"])["state"] == "succeeded"
        # vda: ext4 on the whole disk.
        src_a = os.path.join(tmp, "tree-a")
        cls.files_a = make_tree(src_a, 1)
        raw_a = os.path.join(tmp, "a.raw")
        with open(raw_a, "wb") as f:
            f.truncate(48 * MIB)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", src_a, raw_a], check=True)
        # vdb: an MBR with one partition from 1 MiB; ext4 in it (-E offset).
        src_b = os.path.join(tmp, "tree-b")
        cls.files_b = make_tree(src_b, 2)
        raw_b = os.path.join(tmp, "b.raw")
        with open(raw_b, "wb") as f:
            f.truncate(40 * MIB)
        subprocess.run(["sfdisk", "-q", raw_b], input="label: dos\nstart=2048, type=83\n", text=True, check=True)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "offset=1048576", "-d", src_b, raw_b, f"{38 * 1024}k"], check=True)
        os.makedirs(ab.shared, exist_ok=True)
        disks = []
        for name, raw in (("vda", raw_a), ("vdb", raw_b)):
            q = os.path.join(ab.shared, f"fl1-{name}.qcow2")
            subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, q], check=True)
            disks.append(q)
        # The disk guest writes nothing (no armada.disk_write) and idles;
        # vdb is added beside its vda.
        log = os.path.join(ab.bed.shared_dir, "fl1.log")
        xml = disk_guest_xml("fl1", cls.kernel, cls.initrd, disks[0], [], console_log=log)
        xml = xml.replace("    <interface type='user'>",
                          f"    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disks[1]}'/>"
                          "<target dev='vdb' bus='virtio'/></disk>\n    <interface type='user'>")
        cls.vm = ab.define_raw("h1", "fl1", xml)
        def up():
            if not os.path.exists(log):
                return False
            with open(log, errors="replace") as f:
                return "armada-guest: disk written" in f.read()
        wait_until(up, 120, interval=0.5, what="the guest to be up")
        r = d.ok("POST", f"/api/v1/vms/{cls.vm['id']}/backups", {"datastore": "ds1"})
        j = d.wait_job(r["job"]["id"], timeout=300)
        assert j["state"] == "succeeded", j
        cls.point = j["result"]["point_id"]
        # Nothing is restored: the VM goes before any file is read, so the
        # reads cannot come from it or its host.
        ab.bed.virsh("h1", "destroy", "fl1", check=False)
        for q in disks:
            os.unlink(q)

    # -- helpers -------------------------------------------------------------
    def get(self, route, path, disk=None, token=None):
        q = {"vm": "fl1", "point": self.point, "path": path}
        if disk:
            q["disk"] = disk
        url = f"/api/v1/backups/{route}?" + urllib.parse.urlencode(q)
        # The harness's request() waits 30 s; the appliance may take longer.
        req = urllib.request.Request(self.ab.d.url + url, method="GET")
        req.add_header("Authorization", "Bearer " + (token or self.ab.d.token))
        try:
            with urllib.request.urlopen(req, timeout=FILES_TIMEOUT) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def listing(self, path, disk=None):
        st, _, body = self.get("files", path, disk)
        if st == 500 and b"did not start" in body:
            self.skipTest(f"libguestfs's appliance cannot start here: {body.decode(errors='replace')[:400]}")
        self.assertEqual(st, 200, body)
        return json.loads(body)

    # -- tests ---------------------------------------------------------------
    def test_whole_disk_file_system(self):
        top = self.listing("/")
        sessions = set(self.workdirs())
        self.assertEqual((top["path"], top["point_id"], top["disk"]), ("/", self.point, "vda"))
        self.assertEqual([(e["name"], e["type"], e["fstype"]) for e in top["items"]], [("sda", "filesystem", "ext4")])
        self.assertEqual(top["items"][0]["size"], 48 * MIB)

        data = self.listing("/sda/./data//")
        self.assertEqual(data["path"], "/sda/data")
        by = {e["name"]: e for e in data["items"]}
        self.assertEqual(sorted(by), ["big.bin", "link", "notes.txt", "sub"])
        self.assertEqual((by["big.bin"]["type"], by["big.bin"]["size"]), ("file", len(self.files_a["/data/big.bin"])))
        self.assertEqual(by["sub"]["type"], "directory")
        self.assertEqual(by["link"]["type"], "symlink")
        self.assertGreater(by["notes.txt"]["mtime"], 1_600_000_000)

        # A file of three chunks, through the CLI, compared by SHA-256.
        out = os.path.join(self.tmp, "big.out")
        d = self.ab.d
        r = subprocess.run([ARMADA, "--server", d.url, "--token", d.token, "backup", "download", f"fl1/{self.point}",
                            "/sda/data/big.bin", "--to", out], capture_output=True, text=True, timeout=FILES_TIMEOUT + 60)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out, "rb") as f:
            self.assertEqual(sha(f.read()), sha(self.files_a["/data/big.bin"]))
        self.assertEqual([n for n in os.listdir(self.tmp) if ".armada-" in n], [], "no temporary file left")

        # Errors: a file not there, a directory; the listing of '/' by the CLI.
        st, _, body = self.get("download", "/sda/data/nope.txt")
        self.assertEqual(st, 404, body)
        self.assertIn(b'"field":"path"', body)
        st, _, body = self.get("download", "/sda/data/sub")
        self.assertEqual(st, 422, body)
        r = subprocess.run([ARMADA, "--server", d.url, "--token", d.token, "backup", "files", f"fl1/{self.point}", "/sda/etc"],
                           capture_output=True, text=True, timeout=FILES_TIMEOUT + 60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"hostname\s+file\s+")
        audit = d.ok("GET", "/api/v1/audit?limit=100")["items"]
        self.assertTrue(any(a["action"] == "backup.download" and "/sda/data/big.bin" in (a.get("detail") or "") for a in audit),
                        audit)
        # Every request on vda went to one session (one appliance, one work
        # directory, private to armadad's user), not a child per request.
        now = set(self.workdirs())
        self.assertTrue(now and now <= sessions, (now, sessions))
        for w in now:
            self.assertEqual(os.stat(w).st_mode & 0o777, 0o700)

    def workdirs(self):
        tmp = tempfile.gettempdir()
        return [os.path.join(tmp, n) for n in os.listdir(tmp) if n.startswith("armada-files-") and not n.startswith("armada-files-sys-")]

    def test_partitioned_disk(self):
        top = self.listing("/", disk="vdb")
        self.assertEqual([(e["name"], e["fstype"]) for e in top["items"]], [("sda1", "ext4")])
        root = self.listing("/sda1", disk="vdb")
        self.assertIn("etc", [e["name"] for e in root["items"]])
        st, hdr, body = self.get("download", "/sda1/etc/hostname", disk="vdb")
        self.assertEqual(st, 200, body)
        self.assertEqual(body, self.files_b["/etc/hostname"])
        self.assertEqual(hdr["Content-Type"], "application/octet-stream")
        self.assertIn('filename="hostname"', hdr["Content-Disposition"])
        # vda's file system is not on vdb.
        st, _, body = self.get("files", "/sda/etc", disk="vdb")
        self.assertEqual(st, 404, body)
        self.assertLessEqual(len(self.workdirs()), 2, "at most two sessions")


if __name__ == "__main__":
    unittest.main()
