"""System tests of monitoring on the namespace test bed with real QEMU.

Two TCG guests that run only a boot sector: one spins (`jmp $`), one halts
(`cli; hlt`). Within a few collection intervals the spinning one shows
several times the CPU of the halted one (absolute figures depend on how
busy the machine is, so the test compares the two). Killing a test-bed host opens the built-in
host-unreachable alert and delivers a webhook to a listener on the
loopback. The live /metrics passes `promtool check metrics`."""
import http.server
import json
import os
import shutil
import subprocess
import threading
import unittest

import armada_harness
from armada_harness import Armadad, wait_until
from testbed import Testbed, skip_reason

# cli; jmp $          -> a vCPU that never rests
BUSY = bytes([0xFA, 0xEB, 0xFE])
# cli; hlt; jmp -3    -> a vCPU that sleeps for good
IDLE = bytes([0xFA, 0xF4, 0xEB, 0xFD])


def boot_sector(path, code):
    # 1 MiB: SeaBIOS cannot read a virtio disk of a single sector.
    data = bytearray(1 << 20)
    data[:len(code)] = code
    data[510:512] = b"\x55\xaa"
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o644)


def domain_xml(name, disk):
    # TCG, not KVM: under this machine's nested KVM (kvm_pvm, DESIGN.md §9)
    # the time a vCPU spends in the guest is not charged to the QEMU
    # process, so a spinning KVM guest shows no CPU at all; TCG's is.
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


class Listener:
    def __init__(self):
        self.posts = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.posts.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TestMonitorKvm(unittest.TestCase):
    bed = None
    d = None
    lis = None

    @classmethod
    def setUpClass(cls):
        why = skip_reason()
        if why:
            raise unittest.SkipTest(why)
        cls.bed = Testbed(2)
        cls.bed.__enter__()
        try:
            cls.lis = Listener()
            for name, code in (("mon-busy", BUSY), ("mon-idle", IDLE)):
                disk = os.path.join(cls.bed.shared_dir, f"{name}.img")
                boot_sector(disk, code)
                xml = os.path.join(cls.bed.shared_dir, f"{name}.xml")
                with open(xml, "w") as f:
                    f.write(domain_xml(name, disk))
                cls.bed.virsh("h1", "define", xml)
                cls.bed.virsh("h1", "start", name)
            # Listen on every address so that a test-bed host can reach
            # armadad from outside the loopback (the /metrics rule).
            port = armada_harness.free_port()
            cls.port = port
            cls.d = Armadad(["--monitor-interval-ms", "1000", "--monitor-webhook-backoff-ms", "200",
                             "--listen", f"0.0.0.0:{port}", "--insecure-http"])
            saved, armada_harness.free_port = armada_harness.free_port, lambda: port
            try:
                cls.d.start()
            finally:
                armada_harness.free_port = saved
            cls.d.token = cls.d.login()
            cls.d.ok("POST", "/api/v1/webhooks", {"url": cls.lis.url})
            for h in cls.bed.hosts:
                host, job = cls.d.add_host(h.name, h.uri)
                assert job["state"] == "succeeded", job
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.d:
                cls.d.cleanup()
            if cls.lis:
                cls.lis.close()
        finally:
            if cls.bed is not None:
                cls.bed.__exit__(None, None, None)

    def vm_id(self, name):
        vm = wait_until(lambda: self.d.find("vms", name), 20, what=f"VM {name} to be discovered")
        return vm["id"]

    def cpu_points(self, vm_id):
        s = self.d.ok("GET", f"/api/v1/metrics/vm/{vm_id}?metric=cpu&last=120")
        return s["series"][0]["points"]

    def test_1_busy_guest_shows_more_cpu_than_idle_one(self):
        busy, idle = self.vm_id("mon-busy"), self.vm_id("mon-idle")
        seen = {}

        def apart():
            b = [p["avg"] for p in self.cpu_points(busy)][-3:]
            i = [p["avg"] for p in self.cpu_points(idle)][-3:]
            seen["b"], seen["i"] = b, i
            return len(b) == 3 and len(i) == 3 and sum(b) / 3 > 3 * (sum(i) / 3) + 1
        try:
            wait_until(apart, 60, interval=0.5, what="the spinning guest's CPU to exceed three times the halted one's")
        finally:
            print(f"\nCPU % over the last 3 samples: spinning guest {seen.get('b')}, halted guest {seen.get('i')}", flush=True)
        # Its disk is seen per device, and the host's load reaches placement.
        # (/metrics shows the newest answer the builder made: within about a second of a round.)
        text = wait_until(lambda: (lambda t: t if 'armada_vm_cpu_usage_ratio{vm="mon-busy",host="h1"}' in t else None)(
            self.d.request("GET", "/api/v1/metrics")[1].decode()), 10, interval=0.2, what="mon-busy's CPU in /metrics")
        host = self.d.find("hosts", "h1")
        hs = self.d.ok("GET", f"/api/v1/metrics/host/{host['id']}?metric=cpu&last=120")["series"][0]["points"]
        self.assertTrue(hs, "the host's CPU series is empty")
        promtool = shutil.which("promtool")
        if promtool:
            r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_1b_metrics_need_a_token_off_the_loopback(self):
        h1 = self.bed.host("h1")
        bridge = h1.addr.rsplit(".", 1)[0] + ".1"

        def curl(*extra):
            r = subprocess.run(["ip", "netns", "exec", self.bed.netns("h1"), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                "--max-time", "10", *extra, f"http://{bridge}:{self.port}/metrics"],
                               capture_output=True, text=True, timeout=30)
            return r.stdout.strip()
        self.assertEqual(curl(), "401")
        self.assertEqual(curl("-H", f"Authorization: Bearer {self.d.token}"), "200")
        self.assertEqual(curl("-H", "Authorization: Bearer " + "0" * 64), "401")

    def test_2_killed_host_opens_unreachable_alert_and_webhook(self):
        self.bed.kill("h2")

        def alert():
            items = self.d.ok("GET", "/api/v1/alerts?state=open")["items"]
            return [a for a in items if a["rule_name"] == "host-unreachable" and a["object_name"] == "h2"]
        (a,) = wait_until(alert, 60, interval=0.5, what="the host-unreachable alert of h2")
        self.assertEqual(a["severity"], "critical")
        post = wait_until(lambda: [p for p in self.lis.posts if p["event"] == "alert.opened"
                                   and p["alert"]["object_name"] == "h2"], 30, interval=0.2,
                          what="the webhook about h2")
        self.assertEqual(post[0]["alert"]["rule_name"], "host-unreachable")
        # /health is the newest answer the builder made (within about a second of a change).
        tree = wait_until(lambda: (lambda t: t if t["health"] == "critical" and any("h2" in r for r in t["reasons"]) else None)(
            self.d.ok("GET", "/api/v1/health")), 10, interval=0.2, what="h2 in the health tree")
        self.assertEqual(tree["health"], "critical")


if __name__ == "__main__":
    unittest.main()
