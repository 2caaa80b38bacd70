"""System test of backups over NBD with TLS on real QEMU (armadad
--backup-tls yes): the test bed's libvirt gets backup_tls_x509_cert_dir and
backup_tls_x509_verify in qemu.conf, a CA of the test's own signs the
host's server certificate (its address) and armadad's client certificate.

- a full and an incremental backup of the disk guest succeed over TLS
  (armadad asks for <server tls='yes'> and connects with TLS required, so
  a success is a TLS session) and the point restores to the guest's data;
- armadad with a client CA that did not sign the host's certificate fails
  the backup naming TLS, leaves no point, and never falls back to plain
  NBD; with the right CA back the next backup succeeds.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "guest"))

from armada_bed import ArmadaBed  # noqa: E402
from testbed import skip_reason  # noqa: E402

MIB = 1 << 20
DISK_MIB = 32


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.pem",
            "-days", "2", "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d, ca, name, usage, san):
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                f"extendedKeyUsage={usage}\n" + (f"subjectAltName={san}\n" if san else ""))
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
            "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem", "-CAcreateserial",
            "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


class TestBackupTlsKvm(unittest.TestCase):
    ab = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        if not shutil.which("openssl"):
            raise unittest.SkipTest("openssl is not installed (the test makes its certificates)")
        from guest import GuestUnavailable, build_disk_guest
        try:
            cls.kernel, cls.initrd = build_disk_guest()
        except GuestUnavailable as e:
            raise unittest.SkipTest(f"no disk guest: {e}")
        cls.tmp = tempfile.mkdtemp(prefix="armada-backup-tls-")
        cls.root = os.path.join(cls.tmp, "root")
        cls.pki = os.path.join(cls.tmp, "pki")          # the CAs and the CSRs
        cls.server = os.path.join(cls.tmp, "server")    # the hosts' backup_tls_x509_cert_dir
        cls.client = os.path.join(cls.tmp, "client")    # armadad's --backup-tls-dir
        for d in (cls.root, cls.pki, cls.server, cls.client):
            os.makedirs(d)
        make_ca(cls.pki, "ca")
        make_ca(cls.pki, "other-ca")
        make_leaf(cls.pki, "ca", "client", "clientAuth", None)
        shutil.copy(os.path.join(cls.pki, "ca.pem"), os.path.join(cls.client, "ca-cert.pem"))
        shutil.copy(os.path.join(cls.pki, "client-cert.pem"), os.path.join(cls.client, "client-cert.pem"))
        shutil.copy(os.path.join(cls.pki, "client-key.pem"), os.path.join(cls.client, "client-key.pem"))
        conf = f'backup_tls_x509_cert_dir = "{cls.server}"\nbackup_tls_x509_verify = 1\n'
        try:
            cls.ab = ArmadaBed(1, cluster=False, bed_args={"qemu_conf": conf},
                               extra_args=["--backup-root", cls.root, "--backup-tls", "yes",
                                           "--backup-tls-dir", cls.client]).__enter__()
            # QEMU reads the server's files when a backup begins: the
            # certificate can name the host's address, known only now.
            addr = cls.ab.bed.hosts[0].addr
            make_leaf(cls.pki, "ca", "server", "serverAuth", f"IP:{addr}")
            shutil.copy(os.path.join(cls.pki, "ca.pem"), os.path.join(cls.server, "ca-cert.pem"))
            shutil.copy(os.path.join(cls.pki, "server-cert.pem"), os.path.join(cls.server, "server-cert.pem"))
            shutil.copy(os.path.join(cls.pki, "server-key.pem"), os.path.join(cls.server, "server-key.pem"))
            cls.ds = os.path.join(cls.root, "ds1")
            r = cls.ab.d.ok("POST", "/api/v1/datastores", {"name": "ds1", "path": cls.ds, "chunk_size": 4 * MIB})
            assert cls.ab.d.wait_job(r["job"]["id"])["state"] == "succeeded"
        except BaseException:
            if cls.ab:
                cls.ab.__exit__(None, None, None)
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.ab:
            cls.ab.__exit__(None, None, None)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def guest(self, name, writes):
        vm, _ = self.ab.start_disk_guest(self, name, self.kernel, self.initrd, writes,
                                         os.path.join(self.ab.bed.shared_dir, "tls"), size_mib=DISK_MIB)
        return vm

    def backup(self, vm_id):
        r = self.ab.d.ok("POST", f"/api/v1/vms/{vm_id}/backups", {"datastore": "ds1"})
        return self.ab.d.wait_job(r["job"]["id"], timeout=300)

    def points(self, vm):
        return [p["point_id"] for p in self.ab.d.ok("GET", f"/api/v1/backups?vm={vm}")["items"]]

    def test_backups_over_tls_and_no_fallback(self):
        ab, d = self.ab, self.ab.d
        vm = self.guest("tls1", [(0x71, 0, 4)])
        j = self.backup(vm["id"])
        self.assertEqual(j["state"], "succeeded", j)
        self.assertTrue(j["result"]["full"])
        self.assertGreater(j["result"]["counters"]["bytes_read"], 0)
        out = ab.bed.virsh("h1", "qemu-monitor-command", "tls1", "--hmp",
                           'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend "write -P 0x72 8M 4M"')
        self.assertNotIn("rror", out)
        time.sleep(1.1)  # point ids are per second
        j = self.backup(vm["id"])
        self.assertEqual(j["state"], "succeeded", j)
        self.assertFalse(j["result"]["full"], j["result"])
        self.assertLessEqual(j["result"]["counters"]["chunks_read"], 2, j["result"])
        inc = j["result"]["point_id"]

        # The point holds the guest's data (read from the datastore, no restore needed).
        mkpoint = os.path.join(os.environ["ARMADA_BUILD"], "tests", "unit", "mkpoint")
        raw = os.path.join(self.tmp, "point.raw")
        subprocess.run([mkpoint, "--read", self.ds, vm["uuid"], inc, "0", raw], check=True)
        want = bytearray(DISK_MIB * MIB)
        want[0:4 * MIB] = b"\x71" * (4 * MIB)
        want[8 * MIB:12 * MIB] = b"\x72" * (4 * MIB)
        with open(raw, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), hashlib.sha256(bytes(want)).hexdigest())
        os.unlink(raw)

        # armadad trusts another CA now: the host's certificate does not
        # verify, the backup fails naming TLS, no point is left, and there
        # is no plain NBD to fall back to (the export is TLS only and
        # armadad requires it).
        ca = os.path.join(self.client, "ca-cert.pem")
        shutil.copy(os.path.join(self.pki, "other-ca.pem"), ca)
        try:
            before = self.points("tls1")
            time.sleep(1.1)
            j = self.backup(vm["id"])
            self.assertEqual(j["state"], "failed", j)
            self.assertIn("with TLS (armadad --backup-tls)", j["error"], j)
            self.assertEqual(self.points("tls1"), before)
        finally:
            shutil.copy(os.path.join(self.pki, "ca.pem"), ca)
        time.sleep(1.1)
        j = self.backup(vm["id"])
        self.assertEqual(j["state"], "succeeded", j)


if __name__ == "__main__":
    unittest.main()
