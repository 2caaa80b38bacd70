"""A test case class on the namespace test bed: the bed and one armadad come
up once for the class (every bed host registered unless told otherwise),
and go even when set-up fails half-way, leaving nothing behind. BedCase
runs a bare Testbed + Armadad; ArmadaBedCase an ArmadaBed and a temporary
directory."""
import shutil
import tempfile
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


class ArmadaBedCase(unittest.TestCase):
    """A test case class whose tests share one ArmadaBed (tests/guest/
    armada_bed.py: the bed, one armadad, every host registered) and one
    temporary directory. set-up runs in phases a subclass fills in:
    skip_reason(), prepare() (the directory exists; may raise SkipTest),
    bed_args() (ArmadaBed's arguments, after prepare), bed_ready(); whatever
    fails, or skips, half-way, tear-down stops the bed, runs release() (for
    what prepare() made outside the directory) and removes the directory."""
    TMP_PREFIX = "armada-sys-"
    TMP_DIR = None      # where the directory is made (None: the default)
    ab = None
    tmp = None

    @classmethod
    def skip_reason(cls):
        """Why this class cannot run here (None: it can), beyond the bed's
        own reasons, which come first."""
        return None

    @classmethod
    def prepare(cls):
        """Runs with cls.tmp made, before the bed comes up."""

    @classmethod
    def bed_args(cls):
        """ArmadaBed's keyword arguments (n_hosts among them)."""
        return {"n_hosts": 1}

    @classmethod
    def bed_ready(cls):
        """Runs once the bed and armadad are up."""

    @classmethod
    def release(cls):
        """Runs at tear-down after the bed went, before the directory goes,
        even after a failed set-up."""

    @classmethod
    def setUpClass(cls):
        why = skip_reason() or cls.skip_reason()
        if why:
            raise unittest.SkipTest(why)
        from armada_bed import ArmadaBed   # tests/guest: on the path of the tests that use this class
        cls.tmp = tempfile.mkdtemp(prefix=cls.TMP_PREFIX, dir=cls.TMP_DIR)
        try:
            cls.prepare()
            cls.ab = ArmadaBed(**cls.bed_args()).__enter__()
            cls.bed_ready()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.ab:
                cls.ab.__exit__(None, None, None)
                cls.ab = None
        finally:
            try:
                cls.release()
            finally:
                if cls.tmp:
                    shutil.rmtree(cls.tmp, ignore_errors=True)
                    cls.tmp = None

    @property
    def d(self):
        return self.ab.d

    @classmethod
    def add_share(cls, path, timeout=120):
        """Adds the library share at path and waits for its scan to succeed."""
        r = cls.ab.d.ok("POST", "/api/v1/library/shares", {"path": path})
        job = cls.ab.d.wait_job(r["job"]["id"], timeout=timeout)
        assert job["state"] == "succeeded", job

    def remove_vm(self, name, kill_timeout=60, delete_timeout=120):
        """Kills (unless stopped) and deletes VM name, if there is one."""
        vm = self.d.find("vms", name)
        if not vm:
            return
        if vm["state"] != "stopped":
            self.d.wait_job(self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/kill")["job"]["id"], timeout=kill_timeout)
        self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"], timeout=delete_timeout)
