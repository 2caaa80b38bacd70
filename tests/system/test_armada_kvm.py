"""System tests: a real armadad managing two test-bed hosts, each a real
libvirtd with real QEMU (KVM where /dev/kvm works, TCG otherwise), checked
with virsh against each host's own URI."""
import os
import signal
import tempfile
import unittest

from armada_harness import wait_until
from bedcase import BedCase
from testbed import kvm_usable


def domstate(bed, host, name):
    r = bed.virsh(host, "domstate", name, check=False)
    return r.strip() if r else None


def host_process(init_pid, comm):
    """The pid of the process named comm among the descendants of a test-bed
    host's init (its PID 1, seen from here)."""
    todo = [init_pid]
    while todo:
        pid = todo.pop()
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == comm:
                    return pid
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            continue
    raise AssertionError(f"no {comm} under pid {init_pid}")


class TestArmadaOnTestbed(BedCase):
    HOSTS = 2

    def test_1_hosts_report_their_facts(self):
        for h in self.bed.hosts:
            host = self.d.find("hosts", h.name)
            self.assertEqual(host["state"], "ok", host)
            self.assertEqual(host["hv_driver"], "QEMU")
            self.assertEqual(host["domain_type"], "kvm" if kvm_usable() else "qemu")
            self.assertGreater(host["cpus"], 0)
            self.assertGreater(host["memory_mib"], 0)

    def test_1b_a_host_preferring_qemu_defines_auto_vms_as_qemu(self):
        """The host's domain type preference, as real libvirtd defines it:
        an auto VM on a host set to qemu is <domain type='qemu'> (TCG) even
        where KVM is offered; an explicit kvm still wins there; kvm as a
        preference is refused where the host offers no KVM."""
        h = self.d.find("hosts", "h2")
        self.addCleanup(self.d.request, "PATCH", f"/api/v1/hosts/{h['id']}", {"domain_type_preference": "auto"})
        self.assertEqual(self.d.ok("PATCH", f"/api/v1/hosts/{h['id']}", {"domain_type_preference": "qemu"})["domain_type_preference"],
                         "qemu")
        vm = self.d.create_vm("sys-pref", "h2", memory_mib=64)
        self.addCleanup(lambda: self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"]))
        self.assertIn("<domain type='qemu'", self.bed.virsh("h2", "dumpxml", "sys-pref"))
        self.assertEqual(self.d.vm(vm["id"])["domain_type"], "qemu")
        if kvm_usable():
            kvm = self.d.create_vm("sys-pref-kvm", "h2", memory_mib=64, domain_type="kvm")
            self.addCleanup(lambda: self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{kvm['id']}")["job"]["id"]))
            self.assertIn("<domain type='kvm'", self.bed.virsh("h2", "dumpxml", "sys-pref-kvm"))
        else:
            st, b = self.d.request("PATCH", f"/api/v1/hosts/{h['id']}", {"domain_type_preference": "kvm"})
            self.assertEqual((st, b["error"]["field"]), (409, "domain_type_preference"), b)

    def test_2_lifecycle_on_each_host_matches_virsh(self):
        for h, other in (("h1", "h2"), ("h2", "h1")):
            name = f"sys-{h}"
            vm = self.d.create_vm(name, h, memory_mib=64, disk_size="64M")
            info = self.d.vm(vm["id"])
            disk = info["disks"][0]["path"]
            self.assertIn(disk, self.bed.virsh(h, "vol-list", "armada"))
            self.assertEqual(domstate(self.bed, h, name), "shut off")
            self.assertIsNone(domstate(self.bed, other, name), "the VM must exist only on its own host")
            for action, virsh_state, armada_state in [("start", "running", "running"), ("pause", "paused", "paused"),
                                                      ("resume", "running", "running"), ("kill", "shut off", "stopped")]:
                job = self.d.vm_action(vm["id"], action)
                self.assertEqual(job["state"], "succeeded", job)
                self.assertEqual(domstate(self.bed, h, name), virsh_state, action)
                self.assertEqual(self.d.vm(vm["id"])["state"], armada_state, action)
            job = self.d.wait_job(self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])
            self.assertEqual(job["state"], "succeeded", job)
            self.assertIsNone(domstate(self.bed, h, name))
            self.assertNotIn(disk, self.bed.virsh(h, "vol-list", "armada"))

    def test_3_stop_powers_off_a_guest_that_ignores_acpi(self):
        # A firmware-only guest has no OS to answer the ACPI power button.
        vm = self.d.create_vm("sys-stop", "h1", memory_mib=64, start=True)
        self.assertEqual(domstate(self.bed, "h1", "sys-stop"), "running")
        job = self.d.vm_action(vm["id"], "stop", {"timeout_s": 2})
        self.assertEqual(job["state"], "succeeded", job)
        self.assertTrue(job["result"]["forced"], job)
        self.assertEqual(domstate(self.bed, "h1", "sys-stop"), "shut off")

    def test_3b_console_vnc_needs_the_password_armadad_hands_out(self):
        import re
        import socket
        vm = self.d.create_vm("sys-vnc", "h1", memory_mib=64, start=True)
        xml = self.bed.virsh("h1", "dumpxml", "--security-info", "sys-vnc")
        port = int(re.search(r"<graphics type='vnc' port='(\d+)'", xml).group(1))
        self.assertIn("listen='0.0.0.0'", xml)
        password = re.search(r"passwd='([^']+)'", xml).group(1)
        self.assertEqual(len(password), 8)
        self.assertNotIn("passwd=", self.bed.virsh("h1", "dumpxml", "sys-vnc"), "libvirt shows the password only with --security-info")
        # The VNC server offers only VNC authentication (type 2), never None (1).
        with socket.create_connection((self.bed.host("h1").addr, port), timeout=10) as s:
            self.assertTrue(s.recv(12).startswith(b"RFB 003."))
            s.sendall(b"RFB 003.008\n")
            n = s.recv(1)[0]
            types = s.recv(n)
        self.assertEqual(list(types), [2])
        # armadad hands the password to a user who may operate the VM.
        self.assertEqual(self.d.ok("GET", f"/api/v1/vms/{vm['id']}/console-password")["password"], password)
        self.d.ok("POST", "/api/v1/users", {"name": "vnc-reader", "password": "vnc-reader-pw", "role": "read-only"})
        ro = self.d.login("vnc-reader", "vnc-reader-pw")
        self.assertEqual(self.d.request("GET", f"/api/v1/vms/{vm['id']}/console-password", token=ro)[0], 403)
        self.d.vm_action(vm["id"], "kill")

    def test_4_reconcile_sees_changes_made_behind_armadas_back(self):
        # Within 15 s, while a quiet host is listed in full only every 60 s
        # (--full-refresh-s): libvirt's domain events are what tell armadad.
        vm = self.d.create_vm("sys-gone", "h2", memory_mib=64)
        self.bed.virsh("h2", "undefine", "sys-gone")
        wait_until(lambda: self.d.vm(vm["id"])["state"] == "missing", 15, what="the VM to be marked missing")
        ev = [e for e in self.d.ok("GET", "/api/v1/events?limit=200")["items"]
              if e["kind"] == "vm.missing" and e["object_name"] == "sys-gone"]
        self.assertEqual(len(ev), 1, ev)
        self.assertIn("h2", ev[0]["message"])
        # A domain defined with virsh is imported as discovered.
        xml = ("<domain type='qemu'><name>outsider</name><memory unit='MiB'>32</memory>"
               "<os><type arch='x86_64'>hvm</type></os></domain>")
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
            f.write(xml)
            f.flush()
            self.bed.virsh("h1", "define", f.name)
        found = wait_until(lambda: self.d.find("vms", "outsider"), 15, what="the outsider to be discovered")
        self.assertEqual(found["origin"], "discovered")
        self.assertEqual(found["host_name"], "h1")

    def test_5_armadad_killed_mid_job_resumes_it_after_restart(self):
        vm = self.d.create_vm("sys-crash", "h1", memory_mib=64, start=True)
        r = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/stop", {"timeout_s": 6})
        job_id = r["job"]["id"]
        wait_until(lambda: self.d.ok("GET", f"/api/v1/jobs/{job_id}")["state"] == "running", 10, what="the stop to run")
        self.assertEqual(self.d.stop(signal.SIGKILL), -9)
        self.d.start()
        self.d.token = self.d.login()
        job = self.d.wait_job(job_id, timeout=60)
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(job["attempts"], 2, job)
        self.assertEqual(domstate(self.bed, "h1", "sys-crash"), "shut off")
        self.assertEqual(self.d.ok("GET", "/api/v1/jobs?state=running")["items"], [])
        kinds = [e["kind"] for e in self.d.ok("GET", "/api/v1/events?limit=200")["items"] if e["object_name"] == "sys-crash"]
        self.assertIn("job.resumed", kinds)

    def test_6_sigterm_does_not_wait_for_long_jobs_and_they_resume(self):
        vm = self.d.create_vm("sys-term", "h1", memory_mib=64, start=True)
        r = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/stop", {"timeout_s": 120})
        job_id = r["job"]["id"]
        wait_until(lambda: "waiting up to 120 s" in (self.d.ok("GET", f"/api/v1/jobs/{job_id}")["step"] or ""), 15,
                   what="the stop to wait for the guest")
        # A clean stop within a few seconds, not after the guest's 120 s.
        self.assertEqual(self.d.stop(signal.SIGTERM, timeout=15), 0)
        self.d.start()
        self.d.token = self.d.login()
        job = self.d.ok("GET", f"/api/v1/jobs/{job_id}")
        self.assertIn(job["state"], ("queued", "running"), "an interrupted job must be recovered, not ended")
        self.d.ok("POST", f"/api/v1/jobs/{job_id}/actions/cancel")
        job = self.d.wait_job(job_id, timeout=30)
        self.assertEqual(job["state"], "cancelled", job)
        self.assertEqual(domstate(self.bed, "h1", "sys-term"), "running", "a cancelled stop leaves the guest running")

    def test_7_a_libvirtd_that_accepts_but_never_answers_is_unreachable_not_waited_for(self):
        """A stopped libvirtd still accepts connections (the kernel queues
        them) but answers nothing. Keepalive drops the live link; every
        reconnect after that must give up at the connect deadline and say
        so, not sit in virConnectOpen for ever leaving the host's state to
        chance."""
        d, bed = self.d, self.bed
        libvirtd = host_process(bed.host("h2").pid, "libvirtd")
        os.kill(libvirtd, signal.SIGSTOP)
        resumed = []

        def resume():
            if not resumed:
                os.kill(libvirtd, signal.SIGCONT)
                resumed.append(True)
        self.addCleanup(resume)
        wait_until(lambda: "did not answer within" in (d.find("hosts", "h2")["state_reason"] or ""), 45,
                   what="a reconnect to h2 to give up at the connect deadline")
        h2 = d.find("hosts", "h2")
        self.assertEqual(h2["state"], "unreachable", h2)
        # h1 was refreshed all along.
        seen = {d.find("hosts", "h1")["last_seen_at"]}
        wait_until(lambda: (seen.add(d.find("hosts", "h1")["last_seen_at"]) or len(seen) > 1), 20,
                   what="h1 to be refreshed while h2 hangs")
        # Shutdown leaves the calls waiting on h2 behind instead of sitting
        # out their deadlines (30 s for a statistics read).
        self.assertEqual(d.stop(signal.SIGTERM, timeout=10), 0)
        d.start()
        d.token = d.login()
        resume()
        wait_until(lambda: d.find("hosts", "h2")["state"] == "ok", 30, what="h2 to answer again")

    def test_8_a_copy_started_while_the_owner_cannot_answer_never_costs_the_original(self):
        """A VM runs on h1; h1's libvirtd stops answering (its guests keep
        running) and, behind Armada's back, a copy is started on h2. The
        record must not follow the copy: had it, the next round after h1
        answered again would have called the original on h1 the stale copy
        and powered it off."""
        d, bed = self.d, self.bed
        vm = d.create_vm("sys-twice", "h1", memory_mib=64, start=True)
        self.addCleanup(lambda: d.request("DELETE", f"/api/v1/vms/{vm['id']}"))
        xml = bed.virsh("h1", "dumpxml", "sys-twice")
        libvirtd = host_process(bed.host("h1").pid, "libvirtd")
        os.kill(libvirtd, signal.SIGSTOP)
        self.addCleanup(os.kill, libvirtd, signal.SIGCONT)
        wait_until(lambda: d.find("hosts", "h1")["state"] == "unreachable", 30, what="h1 to stop answering")
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
            f.write(xml)
            f.flush()
            bed.virsh("h2", "define", f.name)
        self.addCleanup(lambda: bed.virsh("h2", "undefine", "sys-twice", check=False))
        bed.virsh("h2", "start", "sys-twice")
        # Three rounds of h2's reconcile see the copy: the record stays on h1.
        seen = [d.find("hosts", "h2")["last_seen_at"]]
        wait_until(lambda: (seen.append(d.find("hosts", "h2")["last_seen_at"]) or len(set(seen)) > 3), 30,
                   what="three refresh rounds of h2")
        self.assertEqual(d.vm(vm["id"])["host_name"], "h1")
        kinds = [e["kind"] for e in d.ok("GET", "/api/v1/events?limit=100")["items"] if e["object_name"] == "sys-twice"]
        self.assertNotIn("vm.moved", kinds)
        # h1 answers again: the copy on h2 goes, the original stays.
        os.kill(libvirtd, signal.SIGCONT)
        wait_until(lambda: d.find("hosts", "h1")["state"] == "ok", 30, what="h1 to answer again")
        wait_until(lambda: domstate(bed, "h2", "sys-twice") != "running", 30, what="the copy on h2 to be powered off")
        self.assertEqual(domstate(bed, "h1", "sys-twice"), "running")
        self.assertEqual(d.vm(vm["id"])["host_name"], "h1")
        # The event follows the kill and the undefine there (seen powered
        # off before it is written).
        wait_until(lambda: "vm.stale-copy" in [e["kind"] for e in d.ok("GET", "/api/v1/events?limit=100")["items"]
                                               if e["object_name"] == "sys-twice"], 30, what="the vm.stale-copy event")

    def test_9_a_dead_host_is_unreachable_and_comes_back(self):
        vm = self.d.create_vm("sys-dead", "h2", memory_mib=64, start=True)
        self.bed.kill("h2")
        wait_until(lambda: self.d.find("hosts", "h2")["state"] == "unreachable", 20, what="h2 to be unreachable")
        self.assertEqual(self.d.vm(vm["id"])["state"], "unknown")
        self.assertIn("host.unreachable", [e["kind"] for e in self.d.ok("GET", "/api/v1/events?limit=50")["items"]])
        # Jobs against the dead host fail with a sentence, they do not hang.
        job = self.d.vm_action(vm["id"], "start")
        self.assertEqual(job["state"], "failed")
        self.assertIn("h2", job["error"])
        self.bed.start("h2")
        wait_until(lambda: self.d.find("hosts", "h2")["state"] == "ok", 30, what="h2 to be back")
        # The guest died with its host: reconcile reports it stopped.
        wait_until(lambda: self.d.vm(vm["id"])["state"] == "stopped", 15, what="sys-dead to be seen stopped")


if __name__ == "__main__":
    unittest.main()
