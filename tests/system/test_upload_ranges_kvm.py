"""System test of uploads over several libvirt streams into ranges of one
volume (hv_volume_upload_ranges; issues 11 and 12), against a real libvirtd
(one test-bed host, its pool in its private /var/lib/libvirt, so only the
stream reaches it).

- the cause of session 25's corrupt two-stream volume, pinned: libvirt 9.0
  writes a hole of a sparse upload stream as lseek + ftruncate to the
  hole's end (virfdstream.c), so a sparse stream over an earlier range
  cuts off what a stream over a later range wrote before it;
- hv's ranged upload (no holes on the wire, a stream per run of data)
  leaves a volume identical to the source for sizes that are and are not
  multiples of the range size (and of 512), with holes short (sent as
  zeros) and long (skipped), at the start, the middle and the end, with
  2 and 4 streams and with ranges written after the others.
"""
import hashlib
import os
import random
import shutil
import subprocess
import tempfile
import unittest

from testbed import Testbed, skip_reason

MIB = 1 << 20
KIB = 1 << 10
POOL = "rng"


def hvupload():
    return os.path.join(os.environ["ARMADA_BUILD"], "tests", "unit", "hvupload")


def make_image(path, size, holes, seed):
    """size bytes of random data, with the (offset, length) holes left
    unwritten (a sparse file: zeros)."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        f.truncate(size)
        at = 0
        for off, ln in sorted(holes) + [(size, 0)]:
            if off > at:
                f.seek(at)
                f.write(rng.randbytes(off - at))
            at = max(at, off + ln)


def sha_prefix(path, size):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = size
        while left:
            b = f.read(min(left, 4 * MIB))
            if not b:
                break
            h.update(b)
            left -= len(b)
        rest = f.read()
    return h.hexdigest(), rest


class TestUploadRangesKvm(unittest.TestCase):
    bed = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        if not os.access(hvupload(), os.X_OK):
            raise unittest.SkipTest(f"{hvupload()} is not built")
        cls.tmp = tempfile.mkdtemp(prefix="armada-ranges-")
        cls.bed = Testbed(1).__enter__()
        try:
            cls.bed.virsh("h1", "pool-create-as", POOL, "dir", "--target", "/var/lib/libvirt/images/rng", "--build")
        except BaseException:
            cls.bed.__exit__(None, None, None)
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.bed:
            cls.bed.virsh("h1", "pool-destroy", POOL, check=False)
            cls.bed.__exit__(None, None, None)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def download(self, vol):
        back = os.path.join(self.tmp, "back.raw")
        if os.path.exists(back):
            os.unlink(back)
        self.bed.virsh("h1", "vol-download", "--pool", POOL, vol, back, timeout=300)
        self.addCleanup(lambda: os.path.exists(back) and os.unlink(back))
        return back

    def upload(self, img, vol, streams, step, after=0):
        r = subprocess.run([hvupload(), self.bed.host("h1").uri, POOL, vol, img, str(streams), str(step), str(after)],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(lambda: self.bed.virsh("h1", "vol-delete", "--pool", POOL, vol, check=False))
        path, used = r.stdout.split()
        return path, int(used)

    def assert_same(self, img, size, vol):
        want, _ = sha_prefix(img, size)
        back = self.download(vol)
        got, rest = sha_prefix(back, size)
        self.assertEqual(got, want, f"volume {vol} differs from the image ({size} bytes)")
        # The volume holds whole 512-byte sectors: the padding is zeros (one
        # sparse stream ending with a hole truncates the file at its end).
        self.assertIn(len(rest), (0, -size % 512))
        self.assertFalse(any(rest), "the volume's padding is not zeros")

    def test_sparse_hole_cuts_a_later_range(self):
        """The cause: with the later range written first, a sparse stream
        over the earlier range whose hole ends inside it truncates the
        volume there and the later range's bytes are gone."""
        v = lambda *a, **kw: self.bed.virsh("h1", *a, **kw)  # noqa: E731
        v("vol-create-as", POOL, "cause.raw", str(16 * MIB), "--format", "raw")
        self.addCleanup(lambda: v("vol-delete", "--pool", POOL, "cause.raw", check=False))
        late = os.path.join(self.tmp, "late.raw")
        with open(late, "wb") as f:
            f.write(b"\xbb" * (8 * MIB))
        early = os.path.join(self.tmp, "early.raw")
        with open(early, "wb") as f:
            f.truncate(8 * MIB)         # 1 MiB data, a 6 MiB hole, 1 MiB data
            f.write(b"\xaa" * MIB)
            f.seek(7 * MIB)
            f.write(b"\xaa" * MIB)
        v("vol-upload", "--pool", POOL, "cause.raw", late, "--offset", str(8 * MIB), "--length", str(8 * MIB))
        v("vol-upload", "--pool", POOL, "cause.raw", early, "--offset", "0", "--length", str(8 * MIB), "--sparse")
        back = self.download("cause.raw")
        with open(back, "rb") as f:
            data = f.read()
        self.assertEqual(data[:MIB], b"\xaa" * MIB)
        self.assertNotEqual(data[8 * MIB:16 * MIB], b"\xbb" * (8 * MIB),
                            "libvirt kept the later range: its sparse upload no longer truncates at a hole "
                            "(hv_volume_upload_ranges' reason to send no holes may be gone)")

    def test_ranges_are_exact(self):
        cases = [
            # name, size, holes (offset, length), streams, range bytes, ranges written after
            ("multiple", 48 * MIB, [(0, 2 * MIB), (16 * MIB - 64 * KIB, 128 * KIB), (30 * MIB, 5 * MIB),
                                    (47 * MIB, MIB)], 2, 16 * MIB, 0),
            ("odd", 37 * MIB + 12345, [(64 * KIB, 64 * KIB), (3 * MIB, 512 * KIB), (9 * MIB, 3 * MIB),
                                       (20 * MIB - 1000, 8 * MIB), (37 * MIB, 12345)], 4, 5 * MIB + 4096, 0),
            ("after", 33 * MIB + 512, [(MIB, 256 * KIB), (10 * MIB, 2 * MIB), (32 * MIB, MIB + 512)], 2, 8 * MIB, 1),
            ("dense", 24 * MIB - 4096, [], 4, 7 * MIB, 0),
            ("one-stream", 20 * MIB + 100, [(2 * MIB, 3 * MIB), (19 * MIB, MIB + 100)], 1, 6 * MIB, 1),
        ]
        for i, (name, size, holes, streams, step, after) in enumerate(cases):
            with self.subTest(name):
                img = os.path.join(self.tmp, f"{name}.img")
                make_image(img, size, holes, seed=i)
                vol = f"{name}.raw"
                _, used = self.upload(img, vol, streams, step, after)
                self.assertEqual(used, streams)
                self.assert_same(img, size, vol)
                os.unlink(img)


if __name__ == "__main__":
    unittest.main()
