"""A test case class on the namespace test bed: the bed and one armadad come
up once for the class (every bed host registered unless told otherwise),
and go even when set-up fails half-way, leaving nothing behind."""
import unittest

from armada_harness import Armadad
from testbed import Testbed, skip_reason


class BedCase(unittest.TestCase):
    HOSTS = 1           # test-bed hosts
    ARGS = []           # armadad's flags
    REGISTER = True     # add every bed host to armadad

    @classmethod
    def skip_reason(cls):
        """Why this class cannot run here (None: it can); the bed's own
        reasons come first."""
        return None

    @classmethod
    def prepare_bed(cls):
        """Runs once the bed is up, before armadad starts."""

    @classmethod
    def release_bed(cls):
        """Runs first at tear-down, even after a failed set-up."""

    @classmethod
    def setUpClass(cls):
        why = skip_reason() or cls.skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.bed = Testbed(cls.HOSTS)
        cls.d = None
        cls.bed.up()
        try:
            cls.prepare_bed()
            cls.d = Armadad(cls.ARGS).start()
            cls.d.token = cls.d.login()
            for h in cls.bed.hosts if cls.REGISTER else ():
                _, job = cls.d.add_host(h.name, h.uri)
                assert job["state"] == "succeeded", job
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.release_bed()
            if cls.d:
                cls.d.cleanup()
        finally:
            cls.bed.down(check=False)
            left = cls.bed.leftovers()
            assert not left, f"the test bed left {left}"
