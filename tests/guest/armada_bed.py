"""An armadad managing a namespace test bed as one failover cluster: the
common set-up of the migration and HA system tests and of bench/ha.

    with ArmadaBed(4) as ab:
        ab.d          # armada_harness.Armadad, logged in as the administrator
        ab.bed        # testbed.Testbed
        ab.host_id["h1"], ab.cluster_id, ab.shared
"""
import os
import subprocess
import time

from armada_harness import Armadad, wait_until
from testbed import Testbed, kvm_usable


class ArmadaBed:
    def __init__(self, n_hosts, declare_ms=3000, cluster=True, workers=8, extra_args=(), host_args=None, bed_args=None):
        self.n = n_hosts
        self.declare_ms = declare_ms
        self.cluster = cluster
        self.workers = workers
        self.extra = list(extra_args)
        self.host_args = host_args  # (bed, host name) -> extra fields of its POST /hosts
        self.bed_args = dict(bed_args or {})  # Testbed's keyword arguments (qemu_conf=...)
        self.bed = None
        self.d = None

    def __enter__(self):
        self.bed = Testbed(self.n, **self.bed_args)
        self.bed.__enter__()
        try:
            self.d = Armadad(["--ha-declare-ms", str(self.declare_ms), "--workers", str(self.workers)] + self.extra)
            self.d.start()
            self.d.token = self.d.login()
            self.host_id = {}
            for h in self.bed.hosts:
                kw = self.host_args(self.bed, h.name) if self.host_args else {}
                host, job = self.d.add_host(h.name, h.uri, **kw)
                if job["state"] != "succeeded":
                    raise AssertionError(f"adding {h.name} failed: {job}")
                self.host_id[h.name] = host["id"]
                self.set_fence(h.name, self.bed.fence_command(h.name))
            self.shared = os.path.join(self.bed.shared_dir, "cluster1")
            self.cluster_id = None
            if self.cluster:
                c = self.d.ok("POST", "/api/v1/clusters", {"name": "c1", "hosts": [h.name for h in self.bed.hosts],
                                                           "shared_storage": self.shared, "tolerate": 1})
                self.cluster_id = c["id"]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.d:
                self.d.stop()
                keep = os.environ.get("ARMADA_TEST_LOG_DIR")
                if keep:
                    with open(os.path.join(keep, f"armadad-{os.getpid()}.log"), "w") as f:
                        f.write(self.d.log_text())
        finally:
            if self.d:
                self.d.cleanup()
            if self.bed:
                self.bed.__exit__(None, None, None)
        return False

    # -- helpers -------------------------------------------------------------
    def set_fence(self, host, argv):
        return self.d.ok("PATCH", f"/api/v1/hosts/{self.host_id[host]}/fencing", {"command": argv})

    def host_name(self, host_id):
        for k, v in self.host_id.items():
            if v == host_id:
                return k
        return None

    def create_vm(self, name, host, memory_mib=64, disk="16M", start=True, ha=None, **kw):
        body = dict(memory_mib=memory_mib, start=start, domain_type="kvm" if kvm_usable() else "qemu", **kw)
        if disk:
            body["disk_size"] = disk
        vm = self.d.create_vm(name, host, **body)
        if ha:
            self.d.ok("PATCH", f"/api/v1/vms/{vm['id']}/ha", {"priority": ha})
        return vm

    def running_on(self, name):
        """Hosts (up ones) whose libvirt runs domain NAME, by virsh."""
        out = []
        for h in self.bed.hosts:
            if h.pid is None:
                continue
            names = self.bed.virsh(h.name, "list", "--name", check=False, timeout=20).split()
            if name in names:
                out.append(h.name)
        return out

    def migrate(self, vm_id, wait=True, timeout=120, **body):
        r = self.d.ok("POST", f"/api/v1/vms/{vm_id}/migrate", body)
        if not wait:
            return r["job"]
        return self.d.wait_job(r["job"]["id"], timeout=timeout)

    def events(self, kind=None, limit=500):
        ev = self.d.ok("GET", f"/api/v1/events?limit={limit}")["items"]
        return [e for e in ev if kind is None or e["kind"] == kind]

    def wait_vm(self, vm_id, pred, timeout, what):
        return wait_until(lambda: (lambda v: v if pred(v) else None)(self.d.vm(vm_id)), timeout, interval=0.1, what=what)

    def define_raw(self, host, name, xml):
        """Defines and starts a domain behind Armada's back; returns the
        imported VM once reconcile has found it."""
        path = os.path.join(self.bed.shared_dir, f"{name}.xml")
        with open(path, "w") as f:
            f.write(xml)
        self.bed.virsh(host, "define", path)
        self.bed.virsh(host, "start", name)

        def found():
            items = self.d.ok("GET", f"/api/v1/vms?name={name}")["items"]
            return items[0] if items and items[0]["state"] == "running" else None
        return wait_until(found, 30, interval=0.2, what=f"armadad to discover {name}")

    def start_disk_guest(self, case, name, kernel, initrd, writes, disk_dir, log_dir=None, host="h1", size_mib=32,
                         undefine_on=("h1",)):
        """The guest holding known data that the backup and restore system
        tests share: a fresh qcow2 disk of size_mib in disk_dir, tests/guest's
        disk guest (kernel, initrd from build_disk_guest()) defined and
        started on host behind Armada's back, writing writes ([(byte,
        offset MiB, length MiB)]) at boot. Returns (vm, console log path)
        once the guest has written its data and synced. The case's clean-up
        undefines the domain (destroyed, its checkpoints' and snapshots'
        metadata gone, on every host of undefine_on) and then removes the
        disk, even when the test fails."""
        from guest import disk_guest_xml
        os.makedirs(disk_dir, exist_ok=True)
        disk = os.path.join(disk_dir, f"{name}.qcow2")
        log = os.path.join(log_dir or disk_dir, f"{name}.log")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, f"{size_mib}M"], check=True)
        case.addCleanup(lambda: os.path.exists(disk) and os.unlink(disk))
        vm = self.define_raw(host, name, disk_guest_xml(name, kernel, initrd, disk, writes, console_log=log))
        case.addCleanup(self.undefine_guest, name, undefine_on)
        self.wait_guest_written(name, log)
        return vm, log

    @staticmethod
    def wait_guest_written(name, log, timeout=120):
        """Until the disk guest whose console goes to log said it wrote its
        data (and synced)."""
        def written():
            if not os.path.exists(log):
                return False
            with open(log, errors="replace") as f:
                return "armada-guest: disk written" in f.read()
        wait_until(written, timeout, interval=0.5, what=f"guest {name} to write its data")

    def undefine_guest(self, name, hosts=("h1",)):
        """The domain name gone from hosts: destroyed, undefined with its
        checkpoints' and snapshots' metadata; missing is fine."""
        for h in hosts:
            self.bed.virsh(h, "destroy", name, check=False)
            for cp in self.bed.virsh(h, "checkpoint-list", name, "--name", check=False).split():
                self.bed.virsh(h, "checkpoint-delete", name, cp, "--metadata", check=False)
            self.bed.virsh(h, "undefine", name, "--snapshots-metadata", "--checkpoints-metadata", check=False)


def qemu_img(path, size="16M"):
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, size], check=True)


def monotonic():
    return time.monotonic()
