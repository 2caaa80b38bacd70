"""System tests of the multi-host test bed itself (tests/testbed, DESIGN.md §9).

Two libvirt hosts in their own namespaces: each answers on its own URI with
its own host UUID; a firmware-only VM runs on h1 only; power loss of h1 takes
its QEMU down and a reboot brings h1 back; the disk lease on the shared
storage keeps a second host from starting a VM on a disk in use; `down` leaves
nothing behind.
"""
import os
import re
import subprocess
import time
import unittest

from testbed import Testbed, VirshError, kvm_usable, processes_mentioning, skip_reason


def domain_xml(name, disk=None):
    dtype = "kvm" if kvm_usable() else "qemu"
    disk_xml = ""
    if disk:
        disk_xml = f"""
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>"""
    # Firmware only: SeaBIOS finds nothing bootable and keeps retrying.
    return f"""<domain type='{dtype}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>{disk_xml}
    <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def lease_held(path):
    """True when some process holds a POSIX lock on the file PATH (a lease)."""
    st = os.stat(path)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino} "
    with open("/proc/locks") as f:
        return any(" POSIX " in line and key in line for line in f)


def alive(pid):
    """True when PID is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def qemu_of(name):
    """Live QEMU processes running the domain NAME (by its -name guest=...)."""
    return [p for p in processes_mentioning(f"guest={name},") if "qemu-system" in p[1]]


class TestTestbed(unittest.TestCase):
    bed = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.bed = Testbed(2)
        t0 = time.monotonic()
        cls.bed.__enter__()
        cls.up_seconds = time.monotonic() - t0

    @classmethod
    def tearDownClass(cls):
        if cls.bed is not None:
            cls.bed.__exit__(None, None, None)
            left = cls.bed.leftovers()
            if left:
                raise AssertionError(f"test bed left behind: {left}")

    def setUp(self):
        # Tests may power h1 off; each starts with every host up.
        for name, st in self.bed.status().items():
            if st == "off":
                self.bed.start(name)
        self.domains = []

    def tearDown(self):
        for host, name in self.domains:
            if self.bed.answers(host):
                self.bed.virsh(host, "destroy", name, check=False)
                self.bed.virsh(host, "undefine", name, check=False)

    def define(self, host, name, disk=None):
        path = os.path.join(self.bed.shared_dir, f"{name}.xml")
        with open(path, "w") as f:
            f.write(domain_xml(name, disk))
        self.bed.virsh(host, "define", path)
        self.domains.append((host, name))

    def domstate(self, host, name):
        return self.bed.virsh(host, "domstate", name).strip()

    def test_hosts_answer_on_own_uri_with_distinct_uuids(self):
        self.assertLess(self.up_seconds, 30)
        uuids = {}
        for h in self.bed.hosts:
            self.assertEqual(h.uri, f"qemu+tcp://{h.addr}/system")
            out = self.bed.virsh(h.name, "version")
            self.assertRegex(out, r"Running hypervisor: QEMU \d+")
            caps = self.bed.virsh(h.name, "capabilities")
            m = re.search(r"<host>\s*<uuid>([0-9a-f-]{36})</uuid>", caps)
            self.assertIsNotNone(m, caps[:400])
            uuids[h.name] = m.group(1)
            with open(os.path.join(self.bed.state_dir, h.name, "host_uuid")) as f:
                self.assertEqual(f.read().strip(), m.group(1))
            # Each host has its own hostname, resolvable by itself.
            self.assertEqual(self.bed.virsh(h.name, "hostname").strip(), h.name)
        self.assertEqual(len(set(uuids.values())), 2, uuids)
        # Separate libvirt state: a storage pool defined on h1 is unknown on h2.
        pool = f"tb{self.bed.id}-pool"
        self.bed.virsh("h1", "pool-define-as", pool, "dir", "--target", self.bed.shared_dir)
        try:
            self.assertIn(pool, self.bed.virsh("h1", "pool-list", "--all", "--name"))
            self.assertNotIn(pool, self.bed.virsh("h2", "pool-list", "--all", "--name"))
        finally:
            self.bed.virsh("h1", "pool-undefine", pool, check=False)

    def test_vm_runs_on_one_host_and_dies_with_it(self):
        name = f"tb{self.bed.id}-pl"
        self.define("h1", name)
        self.bed.virsh("h1", "start", name)
        self.assertEqual(self.domstate("h1", name), "running")
        with self.assertRaises(VirshError) as cm:
            self.bed.virsh("h2", "domstate", name)
        self.assertIn("failed to get domain", cm.exception.stderr)
        self.assertEqual(len(qemu_of(name)), 1, processes_mentioning(name))

        # Power loss: the host's init, libvirtd and the QEMU go at once.
        pid = self.bed.host("h1").pid
        self.bed.kill("h1")
        self.assertFalse(alive(pid), f"init {pid} still alive")
        self.assertEqual(qemu_of(name), [])
        self.assertFalse(self.bed.answers("h1"))
        self.assertEqual(self.bed.status()["h1"], "off")
        self.assertEqual(self.bed.status()["h2"], "up")
        # A second kill of a host that is off is a no-op; fencing confirms off.
        self.assertEqual(self.bed.fence("h1"), 0)

        # Boot again: same address, the persistent domain is there, shut off.
        h1 = self.bed.start("h1")
        self.assertTrue(self.bed.answers("h1"))
        self.assertNotEqual(h1.pid, pid)
        self.assertEqual(self.domstate("h1", name), "shut off")

    def test_vm_stop_is_prompt(self):
        # QEMU daemonises, so the host's PID 1 must reap it (tini); with a
        # plain `sleep` as PID 1 every stop hangs on the zombie (DESIGN.md §9).
        name = f"tb{self.bed.id}-st"
        self.define("h2", name)
        self.bed.virsh("h2", "start", name)
        (pid, _), = qemu_of(name)
        t0 = time.monotonic()
        self.bed.virsh("h2", "destroy", name)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertFalse(os.path.exists(f"/proc/{pid}"), f"QEMU {pid} was not reaped")
        self.assertEqual(self.domstate("h2", name), "shut off")

    def test_live_migration_between_hosts(self):
        disk = os.path.join(self.bed.shared_dir, "mig.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"], check=True)
        name = f"tb{self.bed.id}-mig"
        self.define("h1", name, disk)
        self.domains.append(("h2", name))
        self.bed.virsh("h1", "start", name)
        # libvirt 9.0 does not know a plain directory is shared: --unsafe
        # (DESIGN.md §9 pitfall 3); migration_host points QEMU at h2's address.
        self.bed.virsh("h1", "migrate", "--live", "--p2p", "--persistent", "--undefinesource",
                       "--unsafe", name, self.bed.host("h2").uri)
        self.assertEqual(self.domstate("h2", name), "running")
        self.assertNotIn(name, self.bed.virsh("h1", "list", "--all", "--name"))
        (pid, _), = qemu_of(name)
        h2_init = self.bed.host("h2").pid
        self.assertEqual(os.readlink(f"/proc/{pid}/ns/net"), os.readlink(f"/proc/{h2_init}/ns/net"))
        self.assertEqual(os.readlink(f"/proc/{pid}/ns/pid"), os.readlink(f"/proc/{h2_init}/ns/pid"))

    def test_disk_lease_keeps_second_host_off_a_disk_in_use(self):
        disk = os.path.join(self.bed.shared_dir, "lease.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "16M"], check=True)
        a, b = f"tb{self.bed.id}-la", f"tb{self.bed.id}-lb"
        self.define("h1", a, disk)
        self.define("h2", b, disk)
        self.bed.virsh("h1", "start", a)
        self.assertEqual(self.domstate("h1", a), "running")
        locks = os.path.join(self.bed.shared_dir, "locks")
        leases = os.listdir(locks)
        self.assertEqual(len(leases), 1, "virtlockd wrote no lease on the shared storage")
        lease = os.path.join(locks, leases[0])
        self.assertTrue(lease_held(lease), "the lease is not locked while the VM runs")

        # QEMU's own image lock refuses first: libvirt takes the lockd lease
        # only when it resumes the vCPUs, after QEMU has opened the disk.
        with self.assertRaises(VirshError) as cm:
            self.bed.virsh("h2", "start", b)
        self.assertRegex(cm.exception.stderr, r"(?i)lock")
        self.assertEqual(self.domstate("h2", b), "shut off")
        self.assertEqual(qemu_of(b), [])

        # Once h1 has lost power, the lease is free and h2 may take the disk.
        self.bed.kill("h1")
        self.assertFalse(lease_held(lease), "the lease outlived its host")
        self.bed.virsh("h2", "start", b)
        self.assertEqual(self.domstate("h2", b), "running")
        self.assertTrue(lease_held(lease))


class TestTestbedTeardown(unittest.TestCase):
    def setUp(self):
        why = skip_reason()
        if why:
            self.skipTest(why)

    def test_down_removes_everything_even_after_a_crash(self):
        bed = Testbed(1, bed_id=f"c{os.getpid() % 100000}")
        try:
            bed.up()
            name = f"tb{bed.id}-down"
            path = os.path.join(bed.shared_dir, "down.xml")
            with open(path, "w") as f:
                f.write(domain_xml(name))
            bed.virsh("h1", "create", path)
            self.assertEqual(len(qemu_of(name)), 1)
            self.assertTrue(bed.leftovers())
            # As if the run that brought the bed up had crashed and lost its
            # bookkeeping: `down` still finds everything by the bed's names.
            os.unlink(os.path.join(bed.state_dir, "bed.env"))
            os.unlink(os.path.join(bed.state_dir, "h1", "init.pid"))
        finally:
            bed.down()
        self.assertEqual(bed.leftovers(), [])
        self.assertEqual(qemu_of(name), [])
        # Idempotent: safe when nothing is up.
        bed.down()
        self.assertEqual(bed.leftovers(), [])


if __name__ == "__main__":
    unittest.main()
