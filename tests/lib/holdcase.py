"""A test case class around one armadad with the test hold
(--test-hold-starts FILE): a start on a test host of a VM named on a line of
FILE blocks, deaf to cancel requests, until the line goes, as a start
blocked inside a wedged libvirtd would. Nothing stays held when the class
ends, so no worker is blocked while armadad stops."""
import os
import shutil
import tempfile
import unittest

from armada_harness import Armadad


class HoldCase(unittest.TestCase):
    ARGS = []           # armadad's flags besides the hold

    @classmethod
    def prepare(cls):
        """Runs once armadad answers and is logged in to."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-hold-")
        cls.hold = os.path.join(cls.tmp, "hold")
        cls.d = Armadad(cls.ARGS + ["--test-hold-starts", cls.hold])
        cls.n = 0
        try:
            cls.d.start()
            cls.d.token = cls.d.login()
            cls.prepare()
        except Exception:
            cls.d.cleanup()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.set_held([])
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def held(cls):
        try:
            with open(cls.hold) as f:
                return [l for l in f.read().split("\n") if l]
        except FileNotFoundError:
            return []

    @classmethod
    def set_held(cls, names):
        """Replaces the held names at once (armadad never reads half a file)."""
        tmp = cls.hold + ".new"
        with open(tmp, "w") as f:
            f.write("".join(n + "\n" for n in names))
        os.replace(tmp, cls.hold)
