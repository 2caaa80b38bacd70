"""Integration tests of monitoring: a real armadad with short intervals on
libvirt test-driver hosts. /metrics passes `promtool check metrics`; series
come back; alert rules open and resolve alerts by themselves; webhooks are
delivered to a listener on the loopback, retried after a failure, and a dead
webhook never slows the API; the health tree rolls up; the consolidation
assessment scrapes a fake node_exporter; and a light scale run (50 hosts x
20 VMs) keeps each round under its interval."""
import datetime
import gzip
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import uuid
import zlib

from armada_harness import ARMADA, Armadad, all_pages, raw_get, wait_until

FAST = ["--monitor-interval-ms", "300", "--monitor-webhook-backoff-ms", "200", "--monitor-assess-interval-ms", "300"]


class Listener:
    """An HTTP server on the loopback that records POSTs and answers each
    with the next status of `statuses` (the last one repeats)."""

    def __init__(self, statuses=(200,)):
        self.statuses = list(statuses)
        self.posts = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(n)
                i = len(outer.posts)
                outer.posts.append((self.headers.get("Content-Type"), body))
                self.send_response(outer.statuses[min(i, len(outer.statuses) - 1)])
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeExporter:
    """Serves node_exporter text whose counters advance on every scrape:
    cpu_pattern(i) is the busy share of the i-th interval."""

    def __init__(self, cpus, mem_total_gib, cpu_pattern):
        self.i = 0
        self.busy = 0.0
        self.idle = 0.0
        self.cpus = cpus
        self.mem = mem_total_gib * 2**30
        self.pattern = cpu_pattern
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = outer.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def text(self):
        share = self.pattern(self.i)
        self.i += 1
        self.busy += 10 * self.cpus * share
        self.idle += 10 * self.cpus * (1 - share)
        lines = ["# TYPE node_cpu_seconds_total counter"]
        for c in range(self.cpus):
            lines.append(f'node_cpu_seconds_total{{cpu="{c}",mode="idle"}} {self.idle / self.cpus}')
            lines.append(f'node_cpu_seconds_total{{cpu="{c}",mode="user"}} {self.busy / self.cpus}')
        lines.append(f"node_memory_MemTotal_bytes {self.mem}")
        lines.append(f"node_memory_MemAvailable_bytes {self.mem * 0.75}")
        lines.append(f'node_disk_reads_completed_total{{device="sda"}} {self.i * 100}')
        lines.append(f'node_disk_writes_completed_total{{device="sda"}} {self.i * 50}')
        lines.append(f'node_disk_read_bytes_total{{device="sda"}} {self.i * 4096 * 100}')
        lines.append(f'node_disk_written_bytes_total{{device="sda"}} {self.i * 4096 * 50}')
        lines.append(f'node_network_receive_bytes_total{{device="eth0"}} {self.i * 125000}')
        lines.append(f'node_network_transmit_bytes_total{{device="eth0"}} {self.i * 125000}')
        return "\n".join(lines) + "\n"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class MonitorTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = Armadad(FAST).start()
        cls.d.token = cls.d.login()
        cls.host, _ = cls.d.add_host("t1", "test:///default")
        # The collector runs every 300 ms: wait until t1 has been sampled.
        wait_until(lambda: 'armada_host_memory_used_bytes{host="t1"' in cls.metrics_text(), 20,
                   what="the first sample of host t1")
        # and its built-in VM, found by the host's first refresh
        wait_until(lambda: 'armada_vm_state{vm="test",host="t1",state="running"} 1' in cls.metrics_text(), 20,
                   what="host t1's VM 'test' in the metrics")

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    @classmethod
    def metrics_text(cls, path="/api/v1/metrics", token=None):
        st, body = cls.d.request("GET", path, token=token)
        assert st == 200, (st, body)
        return body.decode() if isinstance(body, bytes) else body

    @classmethod
    def stat(cls, name):
        for line in cls.metrics_text().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return -1

    def new_vm(self, name):
        vm = self.d.create_vm(name, "t1")
        self.assertEqual(self.d.vm_action(vm["id"], "start")["state"], "succeeded")
        return vm

    def rule(self, body, expect=(201,)):
        st, b = self.d.request("POST", "/api/v1/alert-rules", body)
        self.assertIn(st, expect, b)
        return b

    def open_alerts(self, rule_name=None):
        items = self.d.ok("GET", "/api/v1/alerts?state=open")["items"]
        return [a for a in items if rule_name is None or a["rule_name"] == rule_name]


class TestPrometheus(MonitorTestCase):
    def test_exposition_passes_promtool(self):
        text = self.metrics_text()
        self.assertIn('armada_host_up{host="t1",group="All Hosts"} 1', text)
        self.assertIn("process_cpu_seconds_total ", text)
        self.assertIn("armada_monitor_round_duration_seconds ", text)
        self.assertIn('armada_jobs{state="succeeded"}', text)
        self.assertIn('armada_alerts_open{severity="critical"}', text)
        self.assertIn('armada_vm_state{vm="test",host="t1",state="running"} 1', text)
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool is not installed (Debian package prometheus)")
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_root_metrics_path(self):
        st, body = self.d.request("GET", "/metrics")
        self.assertEqual(st, 200, body)
        self.assertIn(b"armada_up 1", body)
        promtool = shutil.which("promtool")
        if promtool:
            r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_content_type_and_token_rule(self):
        import urllib.request
        req = urllib.request.Request(self.d.url + "/api/v1/metrics", headers={"Authorization": "Bearer " + self.d.token})
        with urllib.request.urlopen(req, timeout=10) as resp:
            self.assertTrue(resp.headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        # No token, from the loopback too: refused (armadad --metrics-public lifts it).
        for path in ("/metrics", "/api/v1/metrics"):
            st, body = self.d.request("GET", path, auth=False)
            self.assertEqual(st, 401, body)


class TestMetricsCounts(unittest.TestCase):
    """The jobs', alerts' and deliveries' counts of /metrics (the plain,
    unauthenticated scrape of --metrics-public) are cached, not read from
    the database per request: read again once a job, event or alert changes
    (or a second passed), so they stay right as jobs and alerts change."""

    @classmethod
    def setUpClass(cls):
        # Rounds every 2 s (each reads the counts anew, as the monitor's own
        # figures change with it): alerts open and resolve within the test.
        cls.d = Armadad(["--metrics-public", "--monitor-interval-ms", "2000"]).start()
        cls.d.token = cls.d.login()
        cls.d.add_host("t1", "test:///default")

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def scrape(self):
        st, body = self.d.request("GET", "/metrics", auth=False)
        self.assertEqual(st, 200, body)
        out = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def jobs_in(self, state):
        return len(self.d.ok("GET", f"/api/v1/jobs?state={state}&limit=1000")["items"])

    def alerts(self, acknowledged=None):
        items = self.d.ok("GET", "/api/v1/alerts?state=open")["items"]
        return len([a for a in items if a["severity"] == "warning" and (acknowledged is None or a["acknowledged"] == acknowledged)])

    def counts_agree(self):
        """The scrape's job and warning-alert counts equal the API's lists."""
        want = {'armada_jobs{state="succeeded"}': self.jobs_in("succeeded"),
                'armada_jobs{state="failed"}': self.jobs_in("failed"),
                'armada_alerts_open{severity="warning"}': self.alerts(),
                'armada_alerts_unacknowledged{severity="warning"}': self.alerts(acknowledged=False)}
        m = self.scrape()
        return {k: m.get(k) for k in want} == want

    def test_counts_are_cached_and_follow_jobs_and_alerts(self):
        d = self.d
        # Scrapes in a row read the database at most once a second (and
        # once a monitor round), not once each.
        t0 = time.monotonic()
        first = self.scrape()["armada_metrics_counts_reads_total"]
        for _ in range(30):
            last = self.scrape()["armada_metrics_counts_reads_total"]
        self.assertLessEqual(last - first, 2 * (time.monotonic() - t0) + 2)
        wait_until(self.counts_agree, 10, what="the counts to agree at rest")
        # A job: the succeeded count follows.
        vm = d.create_vm("cnt-vm", "t1")
        self.addCleanup(lambda: d.wait_job(d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"]))
        before = self.scrape()['armada_jobs{state="succeeded"}']
        self.assertEqual(d.vm_action(vm["id"], "start")["state"], "succeeded")
        wait_until(lambda: self.scrape()['armada_jobs{state="succeeded"}'] == before + 1, 10, what="the started job counted")
        self.assertTrue(self.counts_agree())
        # An alert opens, is acknowledged, resolves: each shows.
        rule = d.ok("POST", "/api/v1/alert-rules", {"name": "cnt-paused", "object_kind": "vm", "metric": "state", "comparison": "==",
                                                    "state": "paused", "severity": "warning", "scope": "object", "scope_id": vm["id"]})
        self.addCleanup(d.request, "DELETE", f"/api/v1/alert-rules/{rule['id']}")
        d.vm_action(vm["id"], "pause")
        (alert,) = wait_until(lambda: [a for a in d.ok("GET", "/api/v1/alerts?state=open")["items"] if a["rule_name"] == "cnt-paused"],
                              30, what="the cnt-paused alert to open")
        wait_until(lambda: self.scrape()['armada_alerts_open{severity="warning"}'] == self.alerts() >= 1, 10,
                   what="the open alert counted")
        self.assertTrue(self.counts_agree())
        d.ok("POST", f"/api/v1/alerts/{alert['id']}/actions/acknowledge")
        wait_until(lambda: self.scrape()['armada_alerts_unacknowledged{severity="warning"}'] == self.alerts(acknowledged=False),
                   10, what="the acknowledgement counted")
        d.vm_action(vm["id"], "resume")
        wait_until(lambda: not [a for a in d.ok("GET", "/api/v1/alerts?state=open")["items"] if a["rule_name"] == "cnt-paused"],
                   30, what="the cnt-paused alert to resolve")
        wait_until(self.counts_agree, 10, what="the resolved alert counted")
        d.vm_action(vm["id"], "stop")


class TestSeries(MonitorTestCase):
    def test_host_series(self):
        hid = self.host["id"]
        def points():
            s = self.d.ok("GET", f"/api/v1/metrics/host/{hid}?metric=memory&last=60")
            return s["series"][0]["points"]
        pts = wait_until(points, 10, what="memory points of host t1")
        self.assertEqual(self.d.ok("GET", f"/api/v1/metrics/host/{hid}?metric=memory&last=60")["tier"], "raw")
        self.assertGreater(pts[-1]["avg"], 0)
        self.assertGreaterEqual(pts[-1]["max"], pts[-1]["avg"])
        every = self.d.ok("GET", f"/api/v1/metrics/host/{hid}?last=60&step=5")
        self.assertEqual(every["step_ms"], 5000)
        self.assertEqual({s["metric"] for s in every["series"]},
                         {"cpu", "memory", "memory_pct", "disk_read", "disk_write", "disk_iops", "net_rx", "net_tx", "pool_pct"})
        # A long window reads a rollup tier.
        self.assertEqual(self.d.ok("GET", f"/api/v1/metrics/host/{hid}?last=2592000")["tier"], "1h")

    def test_bad_requests(self):
        hid = self.host["id"]
        st, b = self.d.request("GET", f"/api/v1/metrics/host/{hid}?metric=bogus")
        self.assertEqual(st, 400)
        self.assertEqual(b["error"]["field"], "metric")
        self.assertIn("'bogus'", b["error"]["message"])
        self.assertEqual(self.d.request("GET", "/api/v1/metrics/host/99999")[0], 404)
        self.assertEqual(self.d.request("GET", f"/api/v1/metrics/pool/{hid}")[0], 404)
        self.assertEqual(self.d.request("GET", f"/api/v1/metrics/host/{hid}?last=0")[0], 400)
        self.assertEqual(self.d.request("GET", f"/api/v1/metrics/host/{hid}", auth=False)[0], 401)


class TestAlerts(MonitorTestCase):
    def test_rule_opens_updates_and_resolves(self):
        vm = self.new_vm("mon-pause")
        r = self.rule({"name": "paused-vm", "object_kind": "vm", "metric": "state", "comparison": "==", "state": "paused",
                       "severity": "warning", "scope": "object", "scope_id": vm["id"]})
        self.assertFalse(r["builtin"])
        self.assertEqual(self.open_alerts("paused-vm"), [])
        self.d.vm_action(vm["id"], "pause")
        (alert,) = wait_until(lambda: self.open_alerts("paused-vm"), 10, what="the paused-vm alert to open")
        self.assertEqual(alert["object_name"], "mon-pause")
        self.assertIn("mon-pause", alert["message"])
        # Acknowledge: once.
        acked = self.d.ok("POST", f"/api/v1/alerts/{alert['id']}/actions/acknowledge")
        self.assertTrue(acked["acknowledged"])
        self.assertEqual(self.d.request("POST", f"/api/v1/alerts/{alert['id']}/actions/acknowledge")[0], 409)
        self.assertEqual(self.d.request("POST", "/api/v1/alerts/999999/actions/acknowledge")[0], 404)
        self.d.vm_action(vm["id"], "resume")
        wait_until(lambda: not self.open_alerts("paused-vm"), 10, what="the paused-vm alert to resolve")
        done = self.d.ok("GET", f"/api/v1/alerts/{alert['id']}")
        self.assertEqual(done["state"], "resolved")
        kinds = [e["kind"] for e in self.d.ok("GET", "/api/v1/events?limit=200")["items"]]
        for k in ("alert.opened", "alert.acknowledged", "alert.resolved"):
            self.assertIn(k, kinds)

    def test_metric_rule_with_duration(self):
        # test:///default reports its memory; 'memory > 0 for 1 s' holds.
        self.rule({"name": "mem-any", "object_kind": "host", "metric": "memory", "comparison": ">", "threshold": 0,
                   "duration_s": 1, "severity": "info", "scope": "object", "scope_id": self.host["id"]})
        (a,) = wait_until(lambda: self.open_alerts("mem-any"), 10, what="the mem-any alert")
        self.assertGreater(a["value"], 0)
        opened = time.time()
        rid = [x for x in self.d.ok("GET", "/api/v1/alert-rules")["items"] if x["name"] == "mem-any"][0]["id"]
        # Disabling the rule resolves its alert.
        self.d.ok("PATCH", f"/api/v1/alert-rules/{rid}", {"enabled": False})
        wait_until(lambda: not self.open_alerts("mem-any"), 10, what="the mem-any alert to resolve")
        self.assertLess(time.time() - opened, 10)
        self.assertEqual(self.d.request("DELETE", f"/api/v1/alert-rules/{rid}")[0], 204)

    def test_group_scope(self):
        self.d.ok("POST", "/api/v1/host-groups", {"path": "Scoped/Inner"})
        gid = self.d.find("host-groups", "Scoped")["id"]
        # A hypervisor of its own (test:///default is t1's, and a hypervisor is
        # registered once). A test node has no memory figures: the rule is on
        # the state, which t1 shares, so only the scope keeps t1 out.
        self.d.add_host("t9", self.d.test_node_uri("t9"), group="Scoped/Inner")
        self.rule({"name": "scoped-mem", "object_kind": "host", "metric": "state", "comparison": "==", "state": "ok",
                   "scope": "group", "scope_id": gid})
        (a,) = wait_until(lambda: self.open_alerts("scoped-mem"), 10, what="the scoped alert")
        self.assertEqual(a["object_name"], "t9")
        # Every round evaluates t1 too; it stays out of the group's scope.
        rounds = self.stat("armada_monitor_rounds_total")
        wait_until(lambda: self.stat("armada_monitor_rounds_total") >= rounds + 2, 10, what="two more rounds")
        self.assertEqual([x["object_name"] for x in self.open_alerts("scoped-mem")], ["t9"])

    def test_rule_validation(self):
        bad = [
            ({"name": "x1", "object_kind": "vm", "metric": "cpu", "comparison": ">"}, "threshold"),
            ({"name": "x2", "object_kind": "vm", "metric": "pool_pct", "comparison": ">", "threshold": 1}, "metric"),
            ({"name": "x3", "object_kind": "host", "metric": "state", "comparison": ">", "state": "ok"}, "comparison"),
            ({"name": "x4", "object_kind": "host", "metric": "state", "comparison": "==", "state": "exploded"}, "state"),
            ({"name": "x5", "object_kind": "disk", "metric": "cpu", "comparison": ">", "threshold": 1}, "object_kind"),
            ({"name": "x6", "object_kind": "vm", "metric": "cpu", "comparison": ">", "threshold": "lots"}, "threshold"),
            ({"name": "x7", "object_kind": "vm", "metric": "cpu", "comparison": ">", "threshold": 1, "scope": "group",
              "scope_id": 987654}, "scope_id"),
            ({"name": "x8", "object_kind": "vm", "metric": "cpu", "comparison": ">", "threshold": 1, "colour": "red"}, "colour"),
            ({"name": "bad name", "object_kind": "vm", "metric": "cpu", "comparison": ">", "threshold": 1}, "name"),
            ({"name": "x9", "object_kind": "vm", "metric": "cpu", "comparison": ">", "threshold": 1, "severity": "dire"}, "severity"),
        ]
        for body, field in bad:
            st, b = self.d.request("POST", "/api/v1/alert-rules", body)
            self.assertIn(st, (400, 422), (body, b))
            self.assertEqual(b["error"]["field"], field, (body, b))
        builtin = [x for x in self.d.ok("GET", "/api/v1/alert-rules")["items"] if x["builtin"]]
        self.assertEqual({x["name"] for x in builtin}, {"host-unreachable", "host-not-responding", "host-failed", "host-fenced", "host-memory-high",
                                                        "vm-crashed", "pool-full"})
        st, b = self.d.request("DELETE", f"/api/v1/alert-rules/{builtin[0]['id']}")
        self.assertEqual(st, 409)
        self.assertIn("disable it instead", b["error"]["message"])
        self.rule({"name": "dup", "object_kind": "vm", "metric": "cpu", "comparison": ">", "threshold": 99})
        self.assertEqual(self.d.request("POST", "/api/v1/alert-rules", {"name": "dup", "object_kind": "vm", "metric": "cpu",
                                                                         "comparison": ">", "threshold": 1})[0], 409)

    def test_rule_patch_keeps_what_it_leaves_out(self):
        # The API parses the body into a patch and the monitor's operation
        # applies it: fields left out keep their value.
        r = self.d.ok("POST", "/api/v1/alert-rules", {"name": "keep", "object_kind": "vm", "metric": "cpu", "comparison": ">",
                                                      "threshold": 90, "duration_s": 120, "enabled": False,
                                                      "description": "kept", "severity": "critical"})
        self.addCleanup(self.d.request, "DELETE", f"/api/v1/alert-rules/{r['id']}")
        p = self.d.ok("PATCH", f"/api/v1/alert-rules/{r['id']}", {"threshold": 50})
        self.assertEqual((p["threshold"], p["duration_s"], p["enabled"], p["description"], p["severity"], p["comparison"]),
                         (50, 120, False, "kept", "critical", ">"))
        p = self.d.ok("PATCH", f"/api/v1/alert-rules/{r['id']}", {"enabled": True, "description": "changed"})
        self.assertEqual((p["threshold"], p["enabled"], p["description"]), (50, True, "changed"))
        st, b = self.d.request("PATCH", f"/api/v1/alert-rules/{r['id']}", {"severity": "dire"})
        self.assertEqual((st, b["error"]["field"]), (400, "severity"))
        self.assertEqual(self.d.ok("GET", f"/api/v1/alert-rules/{r['id']}")["severity"], "critical")

    def test_read_only_user(self):
        self.d.ok("POST", "/api/v1/users", {"name": "watcher", "password": "watch-it-closely", "role": "read-only"})
        tok = self.d.login("watcher", "watch-it-closely")
        self.assertEqual(self.d.request("GET", "/api/v1/alert-rules", token=tok)[0], 200)
        self.assertEqual(self.d.request("GET", "/api/v1/alerts", token=tok)[0], 200)
        self.assertEqual(self.d.request("GET", "/api/v1/health", token=tok)[0], 200)
        self.assertEqual(self.d.request("POST", "/api/v1/alert-rules", {"name": "ro", "object_kind": "vm", "metric": "cpu",
                                                                         "comparison": ">", "threshold": 1}, token=tok)[0], 403)
        self.assertEqual(self.d.request("GET", "/api/v1/webhooks", token=tok)[0], 403)
        self.assertEqual(self.d.request("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:1/x"}, token=tok)[0], 403)


class TestWebhooks(MonitorTestCase):
    def test_delivered_and_retried_after_a_failure(self):
        lis = Listener(statuses=(500, 200))
        try:
            hook = self.d.ok("POST", "/api/v1/webhooks", {"url": lis.url, "description": "test listener"})
            vm = self.new_vm("mon-hook")
            self.rule({"name": "hook-paused", "object_kind": "vm", "metric": "state", "comparison": "==", "state": "paused",
                       "scope": "object", "scope_id": vm["id"], "severity": "critical"})
            self.d.vm_action(vm["id"], "pause")
            wait_until(lambda: len(lis.posts) >= 2, 15, what="the webhook to be retried after its first failure")
            ctype, body = lis.posts[0]
            self.assertEqual(ctype, "application/json")
            payload = json.loads(body)
            self.assertEqual(payload["event"], "alert.opened")
            self.assertEqual(payload["alert"]["rule_name"], "hook-paused")
            self.assertEqual(payload["alert"]["object_name"], "mon-hook")
            self.assertEqual(json.loads(lis.posts[1][1]), payload)
            w = wait_until(lambda: (lambda x: x if x["delivered"] >= 1 else None)(
                self.d.ok("GET", f"/api/v1/webhooks/{hook['id']}")), 10, what="the delivery to be recorded")
            self.assertEqual(w["last_status"], "HTTP 200")
            self.d.vm_action(vm["id"], "resume")
            wait_until(lambda: any(json.loads(b)["event"] == "alert.resolved" for _, b in lis.posts), 15,
                       what="the resolve notification")
            self.assertEqual(self.d.request("DELETE", f"/api/v1/webhooks/{hook['id']}")[0], 204)
            self.assertEqual(self.d.request("DELETE", f"/api/v1/webhooks/{hook['id']}")[0], 404)
        finally:
            lis.close()

    def test_dead_webhook_does_not_block_the_api(self):
        # A listener that accepts connections and never answers: every POST
        # waits for the 5 s timeout.
        black = socket.socket()
        black.bind(("127.0.0.1", 0))
        black.listen(64)
        url = f"http://127.0.0.1:{black.getsockname()[1]}/never"
        try:
            hook = self.d.ok("POST", "/api/v1/webhooks", {"url": url})
            vm = self.new_vm("mon-black")
            self.rule({"name": "black-paused", "object_kind": "vm", "metric": "state", "comparison": "==", "state": "paused",
                       "scope": "object", "scope_id": vm["id"]})
            self.d.vm_action(vm["id"], "pause")
            wait_until(lambda: self.open_alerts("black-paused"), 10, what="the alert to open")
            worst = 0
            t_end = time.monotonic() + 3
            while time.monotonic() < t_end:
                t0 = time.monotonic()
                self.d.ok("GET", "/api/v1/vms")
                self.d.ok("GET", "/api/v1/health")
                worst = max(worst, time.monotonic() - t0)
            # A POST to the dead webhook hangs for 5 s; an API call that
            # waited on it would take that long. (Not 0.1 s: this machine
            # may be shared with other busy work.)
            self.assertLess(worst, 2.5, "API calls slowed down while a webhook hung")
            # And the collector keeps going.
            before = self.stat("armada_monitor_rounds_total")
            wait_until(lambda: self.stat("armada_monitor_rounds_total") >= before + 3, 10, what="more rounds")
            self.d.ok("DELETE", f"/api/v1/webhooks/{hook['id']}")
        finally:
            black.close()

    def test_bad_urls(self):
        for url in ("ftp://x/y", "file:///etc/passwd", "http://a b/", ""):
            st, b = self.d.request("POST", "/api/v1/webhooks", {"url": url})
            self.assertEqual(st, 400, (url, b))
            self.assertEqual(b["error"]["field"], "url")


class TestHealth(MonitorTestCase):
    def test_tree_rolls_up(self):
        # t1's built-in VM is discovered by the host's refresh, and the tree
        # is a cached answer (TestAnswerCache): it shows the VM within a round.
        def with_vm():
            tree = self.d.ok("GET", "/api/v1/health")
            hosts = {h["name"]: h for h in tree["children"] if h["kind"] == "host"}
            return tree if "t1" in hosts and any(v["name"] == "test" for v in hosts["t1"]["children"]) else None
        tree = wait_until(with_vm, 15, what="host t1 with its VM 'test' in the health tree")
        self.assertEqual(tree["kind"], "group")
        self.assertEqual(tree["name"], "All Hosts")
        # A host that cannot be reached: critical, rolled up, alerted.
        self.d.ok("POST", "/api/v1/host-groups", {"path": "Lab/Broken"})
        st, b = self.d.request("POST", "/api/v1/hosts", {"name": "gone", "uri": "test:///no/such/file.xml", "group": "Lab/Broken"})
        self.assertEqual(st, 202, b)
        def broken():
            t = self.d.ok("GET", "/api/v1/health")
            lab = [g for g in t["children"] if g["kind"] == "group" and g["name"] == "Lab"]
            return (t, lab[0]) if lab and lab[0]["health"] == "critical" else None
        t, lab = wait_until(broken, 15, what="group Lab to turn critical")
        self.assertEqual(t["health"], "critical")
        self.assertIn("host group 'Broken' is critical", lab["reasons"])
        (alert,) = wait_until(lambda: [a for a in self.open_alerts("host-unreachable") if a["object_name"] == "gone"], 10,
                              what="the host-unreachable alert")
        self.assertEqual(alert["severity"], "critical")
        # The alert opens as the host's state changes; health changes are
        # recorded by the next round.
        wait_until(lambda: any(e["kind"] == "health.changed" for e in self.d.ok("GET", "/api/v1/events?limit=500")["items"]),
                   10, what="a health.changed event")
        # Removing the host resolves its alert.
        self.d.ok("DELETE", f"/api/v1/hosts/{b['host']['id']}")
        wait_until(lambda: not [a for a in self.open_alerts("host-unreachable") if a["object_name"] == "gone"], 10,
                   what="the alert of the removed host to resolve")


def iso_ms(s):
    """'2026-12-01T03:00:00.123Z' as ms since the epoch."""
    return int(datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


# The builder's interval (MONITOR_ANSWER_INTERVAL_MS) plus a build, with room
# for a loaded machine and the sanitizers: how stale an answer may get.
ANSWER_BOUND_S = 5


class TestAnswerCache(MonitorTestCase):
    """/health and /metrics answer from the newest answer a builder thread
    made (issue 13): a change shows up within the builder's bound, a request
    does not build while an answer exists, the answer says how old it is,
    revalidates (ETag) and comes gzip'd, and a delegated administrator never
    gets the tree an administrator's call is served from."""

    def cache_stat(self, kind, answer):
        prefix = f'armada_{kind}{{answer="{answer}"}} '
        if kind in ("hits", "builds"):
            prefix = f'armada_answer_cache_{kind}_total{{answer="{answer}"}} '
        for line in self.metrics_text().splitlines():
            if line.startswith(prefix):
                return float(line[len(prefix):])
        self.fail(f"no {prefix.strip()} in /metrics")

    def vm_node(self, tree, name):
        stack = [tree]
        while stack:
            n = stack.pop()
            if n["kind"] == "vm" and n["name"] == name:
                return n
            stack.extend(n["children"])
        return None

    def health_within_bound(self, pred, what):
        """The first /health for which pred holds, asserting it came within
        the builder's bound."""
        t0 = time.monotonic()
        tree = wait_until(lambda: (lambda t: t if pred(t) else None)(self.d.ok("GET", "/api/v1/health")), ANSWER_BOUND_S * 2,
                          what=what)
        self.assertLess(time.monotonic() - t0, ANSWER_BOUND_S, what)
        return tree

    def test_health_is_cached_and_follows_changes(self):
        vm = self.new_vm("cache-pause")
        self.health_within_bound(lambda t: (self.vm_node(t, "cache-pause") or {}).get("state") == "running", "the new VM")
        hits = self.cache_stat("hits", "health")
        builds = self.cache_stat("builds", "health")
        # Nothing changed: the same answer again, from the cache, not built.
        self.d.ok("GET", "/api/v1/health")
        self.assertGreater(self.cache_stat("hits", "health"), hits)
        # A VM's state change and the alert it raises show up within the bound.
        self.rule({"name": "cache-paused", "object_kind": "vm", "metric": "state", "comparison": "==", "state": "paused",
                   "severity": "warning", "scope": "object", "scope_id": vm["id"]})
        self.d.vm_action(vm["id"], "pause")
        changed = time.time() * 1000
        tree = self.health_within_bound(lambda t: self.vm_node(t, "cache-pause")["state"] == "paused", "the paused VM")
        self.assertGreaterEqual(iso_ms(tree["generated_at"]), changed - 1000)
        self.assertGreater(self.cache_stat("builds", "health"), builds)   # by the builder
        (alert,) = wait_until(lambda: self.open_alerts("cache-paused"), 10, what="the cache-paused alert")
        self.health_within_bound(lambda t: any(r.startswith(f"alert {alert['id']} (warning)")
                                               for r in self.vm_node(t, "cache-pause")["reasons"]), "the alert's reason")
        # Acknowledging shows in the next /metrics (its alert counts are fresh).
        unacked = self.stat('armada_alerts_unacknowledged{severity="warning"}')
        self.d.ok("POST", f"/api/v1/alerts/{alert['id']}/actions/acknowledge")
        self.assertEqual(self.stat('armada_alerts_unacknowledged{severity="warning"}'), unacked - 1)
        # Resolved: the reason is gone from a tree within the bound.
        self.d.vm_action(vm["id"], "resume")
        wait_until(lambda: not self.open_alerts("cache-paused"), 10, what="the cache-paused alert to resolve")
        self.health_within_bound(lambda t: self.vm_node(t, "cache-pause")["state"] == "running" and not [
            r for r in self.vm_node(t, "cache-pause")["reasons"] if r.startswith(f"alert {alert['id']} ")], "the resolved alert")

    def nodes(self, tree):
        """{(kind, id): node} of every host and VM in a health tree."""
        out, stack = {}, [tree]
        while stack:
            n = stack.pop()
            if n["kind"] in ("host", "vm"):
                out[(n["kind"], n["id"])] = n
            stack.extend(n["children"])
        return out

    def test_list_rows_carry_health(self):
        """GET /vms and /hosts?health=1: each row with its node's health and
        reasons from the same cached answer /health sends (the console's
        badges on estates whose whole tree it does not read), revalidated
        by an ETag that moves with health."""
        d = self.d
        vm = self.new_vm("rows-health")
        self.rule({"name": "rows-paused", "object_kind": "vm", "metric": "state", "comparison": "==", "state": "paused",
                   "severity": "warning", "scope": "object", "scope_id": vm["id"]})
        path = "/api/v1/vms?name=rows-health&health=1"
        st, hdrs, _ = raw_get(d, path, d.token)
        etag = hdrs["etag"]
        self.assertEqual(raw_get(d, path, d.token, {"If-None-Match": etag})[0], 304)
        d.vm_action(vm["id"], "pause")
        (alert,) = wait_until(lambda: self.open_alerts("rows-paused"), 10, what="the rows-paused alert")
        row = wait_until(lambda: (lambda r: r if any(x.startswith(f"alert {alert['id']} (warning)") for x in r["health_reasons"])
                                  else None)(d.ok("GET", path)["items"][0]), ANSWER_BOUND_S * 2, what="the alert on the row")
        self.assertEqual((row["name"], row["state"], row["health"]), ("rows-health", "paused", "warning"))
        st, hdrs, _ = raw_get(d, path, d.token, {"If-None-Match": etag})
        self.assertEqual(st, 200)
        self.assertNotEqual(hdrs["etag"], etag)
        # Every row agrees with the tree of the same answer (an answer may
        # be rebuilt between the two reads: read again until they match).
        def agree():
            tree = self.nodes(d.ok("GET", "/api/v1/health"))
            vms = d.ok("GET", "/api/v1/vms?health=1")["items"]
            hosts, _ = all_pages(d, "/api/v1/hosts?health=1", token=d.token, limit=1)
            rows = [("vm", v) for v in vms] + [("host", h) for h in hosts]
            for kind, r in rows:
                n = tree.get((kind, r["id"]))
                want = (n["health"], n["reasons"]) if n else (None, [])
                if (r["health"], r["health_reasons"]) != want:
                    return None
            return rows
        rows = wait_until(agree, ANSWER_BOUND_S * 2, what="list rows and /health to agree")
        self.assertTrue(any(k == "host" and r["health"] == "warning" and any("'rows-health' is warning" in x for x in
                            r["health_reasons"]) for k, r in rows), "the host rolls the VM's health up")
        # Paged and sorted rows, and selected fields, carry it too.
        page = d.ok("GET", "/api/v1/vms?limit=50&sort=-state&health=1&fields=name")["items"]
        self.assertTrue(page)
        self.assertTrue(all(set(r) == {"name", "health", "health_reasons"} for r in page), page[:2])
        self.assertIn("warning", [r["health"] for r in page if r["name"] == "rows-health"])
        # Without health=1 the rows are as before.
        self.assertNotIn("health", d.ok("GET", path.replace("&health=1", ""))["items"][0])
        st, body = d.request("GET", "/api/v1/vms?health=yes")
        self.assertEqual((st, body["error"]["field"]), (400, "health"), body)
        d.vm_action(vm["id"], "resume")
        wait_until(lambda: d.ok("GET", path)["items"][0]["health"] == "healthy", ANSWER_BOUND_S * 2,
                   what="the resumed VM's row healthy again")

    def test_age_is_shown_and_sane(self):
        tree = self.d.ok("GET", "/api/v1/health")
        at = iso_ms(tree["generated_at"])
        now = time.time() * 1000
        self.assertLessEqual(at, now + 1000)
        # Nothing changes in this class between tests for long: the answer
        # is no older than the daemon, and its age gauge agrees.
        self.assertGreater(at, now - 600 * 1000)
        for answer in ("health", "metrics"):
            age = self.cache_stat("answer_age_seconds", answer)
            self.assertGreaterEqual(age, 0)
            self.assertLess(age, 600)
        # Age grows while nothing changes, and stays bounded once things do.
        vm = self.new_vm("cache-age")
        self.health_within_bound(lambda t: self.vm_node(t, "cache-age") is not None, "the new VM")
        self.assertLess(self.cache_stat("answer_age_seconds", "health"), ANSWER_BOUND_S)
        self.d.vm_action(vm["id"], "stop")

    def test_fresh_builds_for_administrators_only(self):
        vm = self.new_vm("cache-fresh")
        self.d.vm_action(vm["id"], "pause")
        before = time.time() * 1000
        tree = self.d.ok("GET", "/api/v1/health?fresh=1")       # no waiting: built for this request
        self.assertEqual(self.vm_node(tree, "cache-fresh")["state"], "paused")
        self.assertGreaterEqual(iso_ms(tree["generated_at"]), before - 5)
        d = self.d
        d.ok("POST", "/api/v1/users", {"name": "fresh-ro", "password": "fresh-pass-7", "role": "read-only"})
        tok = d.login("fresh-ro", "fresh-pass-7")
        st, body = d.request("GET", "/api/v1/health?fresh=1", token=tok)
        self.assertEqual((st, body["error"]["field"]), (403, "fresh"), body)
        self.assertEqual(d.request("GET", "/api/v1/health", token=tok)[0], 200)
        st, body = d.request("GET", "/api/v1/health?fresh=2")
        self.assertEqual((st, body["error"]["field"]), (400, "fresh"), body)
        self.d.vm_action(vm["id"], "resume")

    def test_etag_and_gzip(self):
        d = self.d
        st, hdrs, plain = raw_get(d, "/api/v1/health", d.token)
        self.assertEqual(st, 200)
        etag = hdrs["etag"]
        st, hdrs2, body = raw_get(d, "/api/v1/health", d.token, {"If-None-Match": etag})
        if st == 200:   # a build came in between: the new answer's tag works
            etag = hdrs2["etag"]
            plain = body
            st, hdrs2, body = raw_get(d, "/api/v1/health", d.token, {"If-None-Match": etag})
        self.assertEqual((st, body), (304, b""))
        self.assertEqual(hdrs2["etag"], etag)
        st, hdrs3, packed = raw_get(d, "/api/v1/health", d.token, {"Accept-Encoding": "gzip"})
        self.assertEqual((st, hdrs3.get("content-encoding")), (200, "gzip"))
        if hdrs3["etag"] == etag:
            self.assertEqual(gzip.decompress(packed), plain)
        self.assertEqual(json.loads(gzip.decompress(packed))["kind"], "group")
        st, hdrs4, _ = raw_get(d, "/api/v1/health", d.token, {"Accept-Encoding": "gzip;q=0"})
        self.assertIsNone(hdrs4.get("content-encoding"))
        # /metrics: one gzip member of the whole text (the cached families and
        # the fresh rest spliced), as Prometheus asks for it.
        st, hdrs5, packed = raw_get(d, "/api/v1/metrics", d.token, {"Accept-Encoding": "gzip"})
        self.assertEqual((st, hdrs5.get("content-encoding")), (200, "gzip"))
        z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        text = z.decompress(packed).decode()
        self.assertTrue(z.eof and not z.unused_data)
        self.assertIn('armada_host_up{host="t1",group="All Hosts"} 1\n', text)
        self.assertIn("armada_read_model_rows_read_total ", text)
        self.assertTrue(text.endswith("\n"))
        plain_names = {l.split()[2] for l in self.metrics_text().splitlines() if l.startswith("# TYPE")}
        self.assertEqual({l.split()[2] for l in text.splitlines() if l.startswith("# TYPE")}, plain_names)

    def test_metrics_follow_rounds_and_changes(self):
        # The hosts' and VMs' families are rebuilt only when a round wrote
        # a changed figure (an idle round leaves them: tests/unit/
        # test_monitor.c::test_idle_round_writes_only_changes); what every
        # request appends (the monitor's own figures) follows each round.
        self.metrics_text()
        hits = self.cache_stat("hits", "metrics")
        wait_until(lambda: self.cache_stat("hits", "metrics") > hits + 1, 10, what="a /metrics answer from the cache")
        rounds = self.stat("armada_monitor_rounds_total")
        wait_until(lambda: self.stat("armada_monitor_rounds_total") > rounds, 10, what="a new monitor round")
        self.assertIn('armada_vm_state{vm="', self.metrics_text())
        # A new VM shows up within the bound.
        self.new_vm("cache-new")
        wait_until(lambda: 'armada_vm_state{vm="cache-new",host="t1",state="running"} 1' in self.metrics_text(), ANSWER_BOUND_S,
                   what="the new VM in /metrics")

    def test_delegated_admin_never_sees_the_cached_full_tree(self):
        d = self.d
        d.ok("POST", "/api/v1/host-groups", {"path": "CacheLab"})
        d.add_host("t7", d.test_node_uri("t7"), group="CacheLab")
        d.ok("POST", "/api/v1/users", {"name": "cache-deleg", "password": "deleg-pass-7", "role": "delegated-administrator",
                                       "scopes": ["CacheLab"]})
        tok = d.login("cache-deleg", "deleg-pass-7")
        d.ok("POST", "/api/v1/users", {"name": "cache-self", "password": "self-pass-77", "role": "self-service"})
        stok = d.login("cache-self", "self-pass-77")

        def names(tree):
            out, stack = set(), [tree]
            while stack:
                n = stack.pop()
                out.add((n["kind"], n["name"]))
                stack.extend(n["children"])
            return out
        self.health_within_bound(lambda t: ("host", "t7") in names(t), "host t7")
        for _ in range(3):
            full = names(d.ok("GET", "/api/v1/health"))       # the shared answer
            self.assertIn(("host", "t1"), full)
            tree = d.ok("GET", "/api/v1/health", token=tok)
            self.assertIn("generated_at", tree)
            mine = names(tree)
            self.assertIn(("host", "t7"), mine)
            self.assertNotIn(("host", "t1"), mine)
            self.assertNotIn(("vm", "test"), mine)
            self.assertFalse({n for n in mine if n[0] == "group" and n[1] == "All Hosts"}, mine)
            own = names(d.ok("GET", "/api/v1/health", token=stok))
            self.assertFalse({n for n in own if n[0] in ("host", "group")}, own)
        # The administrator's shared tree is whole after the filtered calls.
        self.assertEqual(names(d.ok("GET", "/api/v1/health")), full)
        # The delegated view has its own ETag (never the whole answer's) and
        # revalidates; gzip'd it decodes to the same view.
        _, ah, _ = raw_get(d, "/api/v1/health", d.token)
        st, h, plain = raw_get(d, "/api/v1/health", tok)
        self.assertEqual(st, 200)
        self.assertNotEqual(h["etag"], ah["etag"])
        st2, _, body = raw_get(d, "/api/v1/health", tok, {"If-None-Match": h["etag"]})
        if st2 == 200:   # a build came in between
            st, h, plain = raw_get(d, "/api/v1/health", tok)
            st2, _, body = raw_get(d, "/api/v1/health", tok, {"If-None-Match": h["etag"]})
        self.assertEqual((st2, body), (304, b""))
        self.assertNotEqual(raw_get(d, "/api/v1/health", stok, {"If-None-Match": h["etag"]})[0], 304)
        st, h2, packed = raw_get(d, "/api/v1/health", tok, {"Accept-Encoding": "gzip"})
        view = json.loads(gzip.decompress(packed) if h2.get("content-encoding") == "gzip" else packed)
        self.assertEqual(names(view), names(json.loads(plain)))


class TestRemovedHostHistory(MonitorTestCase):
    def test_new_host_does_not_inherit_a_removed_hosts_history(self):
        old, _ = self.d.add_host("hist-old", self.d.test_node_uri(
            "hist-old", domains="<domain type='test'><name>hist-dom</name><memory>65536</memory><vcpu>1</vcpu>"
                                "<os><type>hvm</type></os></domain>"))
        def points(hid):
            # pool_pct: a test:///PATH.xml node reports no memory figures.
            s = self.d.ok("GET", f"/api/v1/metrics/host/{hid}?metric=pool_pct&last=600&step=1")
            self.assertEqual(s["step_ms"], 1000)
            return s["series"][0]["points"]
        wait_until(lambda: points(old["id"]), 10, what="pool points of host hist-old")
        # The newest host goes (with the VM found on it): its id was the one
        # a plain INTEGER PRIMARY KEY would hand out next.
        wait_until(lambda: self.d.find("vms", "hist-dom"), 10, what="the domain on hist-old to be imported")
        top_vm = max(v["id"] for v in self.d.ok("GET", "/api/v1/vms")["items"])
        self.assertEqual(self.d.request("DELETE", f"/api/v1/hosts/{old['id']}?force=true")[0], 204)
        self.assertEqual(self.d.request("GET", f"/api/v1/metrics/host/{old['id']}")[0], 404)
        t0 = time.time() * 1000
        new, job = self.d.add_host("hist-new", self.d.test_node_uri("hist-new"))
        self.assertEqual(job["state"], "succeeded", job)
        self.addCleanup(self.d.request, "DELETE", f"/api/v1/hosts/{new['id']}?force=true")
        self.assertGreater(new["id"], old["id"])
        # Whatever the series of the new host holds was sampled after it was added.
        wait_until(lambda: points(new["id"]), 10, what="pool points of host hist-new")
        early = [p for p in points(new["id"]) if p["t"] + 1000 <= t0]
        self.assertEqual(early, [])
        # Nor does a VM get the id of one removed with the host.
        vm = self.d.create_vm("hist-vm", "hist-new")
        self.assertGreater(vm["id"], top_vm)


class TestImmediateHostAlerts(unittest.TestCase):
    """A host that becomes unreachable raises its alert and sends the
    webhooks at once: the monitoring round (every 100000 s here) never comes."""

    def setUp(self):
        self.lis = Listener()
        self.addCleanup(self.lis.close)
        self.d = Armadad(["--monitor-interval-ms", "100000000", "--monitor-webhook-backoff-ms", "200"])
        self.addCleanup(self.d.cleanup)
        self.d.start()
        self.d.token = self.d.login()
        # A port that refuses connections: bound, never listening.
        self.dead = socket.socket()
        self.dead.bind(("127.0.0.1", 0))
        self.addCleanup(self.dead.close)

    def test_unreachable_host_alerts_and_notifies_at_once(self):
        self.d.ok("POST", "/api/v1/webhooks", {"url": self.lis.url})
        uri = f"qemu+tcp://127.0.0.1:{self.dead.getsockname()[1]}/system"
        st, b = self.d.request("POST", "/api/v1/hosts", {"name": "down", "uri": uri})
        self.assertEqual(st, 202, b)
        def alert():
            items = self.d.ok("GET", "/api/v1/alerts?state=open")["items"]
            return [a for a in items if a["rule_name"] == "host-unreachable" and a["object_name"] == "down"]
        (a,) = wait_until(alert, 15, what="the host-unreachable alert of host 'down'")
        self.assertEqual(a["severity"], "critical")
        def delivered():
            return [json.loads(body) for _, body in self.lis.posts
                    if json.loads(body)["event"] == "alert.opened" and json.loads(body)["alert"]["object_name"] == "down"]
        (payload,) = wait_until(delivered, 15, what="the webhook of the host-unreachable alert")
        self.assertEqual(payload["alert"]["rule_name"], "host-unreachable")
        self.assertEqual(payload["alert"]["id"], a["id"])
        # No monitoring round did it: only the one at start-up has run.
        st, text = self.d.request("GET", "/api/v1/metrics")
        rounds = [float(line.split()[1]) for line in text.decode().splitlines()
                  if line.startswith("armada_monitor_rounds_total ")]
        self.assertEqual(rounds, [1.0])
        # Refreshing it again changes nothing: one alert, one delivery.
        j = self.d.ok("POST", f"/api/v1/hosts/{b['host']['id']}/actions/refresh")
        self.d.wait_job(j["job"]["id"])
        self.assertEqual(len(alert()), 1)
        self.assertEqual(len(delivered()), 1)


class TestAssessment(MonitorTestCase):
    def test_leaderboard_and_plan(self):
        steady = FakeExporter(8, 32, lambda i: 0.10)
        spiky = FakeExporter(8, 32, lambda i: 0.9 if i % 4 == 0 else 0.02)
        busy = FakeExporter(16, 64, lambda i: 0.60)
        try:
            for name, ex in (("srv-steady", steady), ("srv-spiky", spiky), ("srv-busy", busy)):
                self.d.ok("POST", "/api/v1/assessments", {"name": name, "node_exporter": ex.url})
            st, b = self.d.request("POST", "/api/v1/assessments", {"name": "srv-ssh", "ssh": "root@srv"})
            self.assertEqual((st, b["error"]["field"]), (422, "ssh"))
            self.assertEqual(self.d.request("POST", "/api/v1/assessments", {"name": "srv-steady", "node_exporter": steady.url})[0], 409)
            def sampled():
                items = self.d.ok("GET", "/api/v1/assessments")["items"]
                return items if len(items) == 3 and all(i["samples"] >= 8 for i in items) else None
            items = wait_until(sampled, 30, what="eight samples of every server")
            self.assertTrue(all(i["url"].endswith("/metrics") for i in items))
            rep = self.d.ok("GET", "/api/v1/assessments/report?host_cpus=16&host_memory_mib=65536&reserve_cpu_pct=0"
                                   "&reserve_memory_mib=0")
            board = rep["leaderboard"]
            self.assertEqual([s["name"] for s in board], ["srv-steady", "srv-busy", "srv-spiky"])
            self.assertEqual([s["spiky"] for s in board], [False, False, True])
            self.assertAlmostEqual(board[0]["cpu_pct"]["mean"], 10.0, delta=1.0)
            self.assertAlmostEqual(board[0]["memory_used_mib"]["p95"], 8192, delta=1)
            plan = rep["plan"]
            self.assertGreaterEqual(plan["hosts_needed"], plan["lower_bound"])
            self.assertGreaterEqual(plan["lower_bound"], 1)
            self.assertTrue(all(s["plan_host"] is not None for s in board))
        finally:
            for ex in (steady, spiky, busy):
                ex.close()


    def test_real_node_exporter(self):
        exe = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
        if not exe:
            self.skipTest("prometheus-node-exporter is not installed")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{port}", "--collector.disable-defaults",
                                 "--collector.cpu", "--collector.meminfo", "--collector.diskstats", "--collector.netdev"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            srv = self.d.ok("POST", "/api/v1/assessments", {"name": "this-machine", "node_exporter": f"http://127.0.0.1:{port}"})
            got = wait_until(lambda: (lambda x: x if x["samples"] >= 2 else None)(
                self.d.ok("GET", f"/api/v1/assessments/{srv['id']}")), 30, what="two samples from node_exporter")
            self.assertEqual(got["cpus"], os.cpu_count())
            with open("/proc/meminfo") as f:
                total_kib = int(f.readline().split()[1])
            self.assertAlmostEqual(got["memory_mib"], total_kib / 1024, delta=1)
            self.assertIsNone(got["last_error"])
            self.d.ok("DELETE", f"/api/v1/assessments/{srv['id']}")
        finally:
            proc.terminate()
            proc.wait(10)


@unittest.skipUnless(os.access(ARMADA, os.X_OK), "the armada CLI is not built")
class TestCliMonitor(MonitorTestCase):
    def cli(self, *args, ok=True):
        env = dict(os.environ, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, ASAN_OPTIONS="detect_leaks=0",
                   HOME=tempfile.gettempdir())
        r = subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=60)
        if ok:
            self.assertEqual(r.returncode, 0, f"armada {' '.join(args)}: {r.stderr}")
        return r

    def test_list_health_column(self):
        vm = self.new_vm("cli-health")
        self.rule({"name": "cli-paused", "object_kind": "vm", "metric": "state", "comparison": "==", "state": "paused",
                   "severity": "warning", "scope": "object", "scope_id": vm["id"]})
        self.d.vm_action(vm["id"], "pause")
        # The rule's alert makes it a warning, within the answer's bound.
        def row():
            out = self.cli("vm", "list", "--prefix", "cli-health", "--health").stdout.splitlines()
            return out if len(out) == 2 and "warning" in out[1] else None
        out = wait_until(row, ANSWER_BOUND_S * 2, what="the paused VM's row with its health")
        self.assertIn("HEALTH", out[0])
        self.assertNotIn("HEALTH", self.cli("vm", "list", "--prefix", "cli-health").stdout)
        hosts = self.cli("host", "list", "--health").stdout.splitlines()
        self.assertIn("HEALTH", hosts[0])
        self.assertTrue(any(ln.startswith("t1 ") and "warning" in ln and "'cli-health'" in ln for ln in hosts), hosts)
        got = json.loads(self.cli("vm", "list", "--prefix", "cli-health", "--health", "-o", "json").stdout)
        self.assertEqual(got["items"][0]["health"], "warning")
        self.d.vm_action(vm["id"], "resume")

    def test_commands(self):
        out = self.cli("perf", "show", "t1", "--host", "--last", "1m", "--metric", "memory").stdout
        self.assertIn("memory of host 't1'", out)
        self.assertIn("MiB", out)
        self.assertIn("t1", self.cli("health").stdout)
        self.assertIn("host-unreachable", self.cli("alert-rule", "list").stdout)
        self.cli("alert-rule", "create", "cli-rule", "--on", "vm", "--metric", "cpu", "--comparison", ">", "--threshold", "95",
                 "--for", "5m", "--severity", "critical")
        self.assertIn("cli-rule", self.cli("alert-rule", "list").stdout)
        self.cli("alert-rule", "disable", "cli-rule")
        self.cli("alert-rule", "delete", "cli-rule")
        r = self.cli("alert-rule", "create", "cli-bad", "--on", "vm", "--metric", "cpu", "--comparison", "~", ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("comparison", r.stderr)
        self.cli("webhook", "add", "http://127.0.0.1:9/cli", "--description", "cli")
        out = self.cli("webhook", "list").stdout
        self.assertIn("http://127.0.0.1:9/cli", out)
        hid = [w for w in self.d.ok("GET", "/api/v1/webhooks")["items"] if w["url"] == "http://127.0.0.1:9/cli"][0]["id"]
        self.cli("webhook", "delete", str(hid))
        self.cli("alert", "list", "--state", "all")
        r = self.cli("perf", "show", "nosuchvm", ok=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("nosuchvm", r.stderr)
        self.cli("assess", "add", "cli-srv", "--node-exporter", "http://127.0.0.1:9")
        self.assertIn("cli-srv", self.cli("assess", "list").stdout)
        self.assertIn("no server in the assessment has samples", self.cli("assess", "report").stdout)
        self.cli("assess", "remove", "cli-srv")


def write_test_node(path, host_no, n_vms):
    """A test:///PATH.xml file: a 16-CPU, 64 GiB node with n_vms domains,
    all but every fifth running."""
    doms = []
    for k in range(n_vms):
        u = uuid.UUID(int=(host_no << 32) | k)
        state = 5 if k % 5 == 4 else 1
        doms.append(f"""  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>s{host_no}-vm{k}</name><uuid>{u}</uuid>
    <memory>1048576</memory><vcpu>2</vcpu><os><type>hvm</type></os>
    <test:runstate>{state}</test:runstate>
  </domain>""")
    with open(path, "w") as f:
        f.write("<?xml version='1.0'?>\n<node>\n  <cpu><mhz>2000</mhz><model>x86</model><active>16</active><max>16</max></cpu>\n"
                "  <memory>67108864</memory>\n" + "\n".join(doms) + "\n</node>\n")


class TestScaleLight(unittest.TestCase):
    """50 test-driver hosts x 20 VMs: every round samples all 1000 VMs well
    within a 2 s interval."""
    HOSTS, VMS, INTERVAL_MS = 50, 20, 2000

    def test_rounds_keep_up(self):
        tmp = tempfile.mkdtemp(prefix="armada-mon-scale-")
        args = ["--monitor-interval-ms", str(self.INTERVAL_MS), "--refresh-interval-ms", "5000"]
        for h in range(self.HOSTS):
            path = os.path.join(tmp, f"s{h}.xml")
            write_test_node(path, h, self.VMS)
            args += ["--ensure-host", f"s{h}=test://{path}"]
        d = Armadad(args)
        # 1,000 VMs' first rounds on a loaded machine (other test modules run
        # beside this one: tests/run-all --jobs) keep the sanitizer-built
        # daemon busy; what this test bounds is a round's CPU time, not how
        # soon a request is answered meanwhile.
        d.request_timeout = 120
        try:
            d.start()
            d.token = d.login()
            total = self.HOSTS * self.VMS

            def stat(name):
                st, body = d.request("GET", "/api/v1/metrics")
                for line in body.decode().splitlines():
                    if line.startswith(name + " "):
                        return float(line.split()[1])
                return -1
            wait_until(lambda: stat("armada_monitor_vms_sampled") == total, 90, interval=0.5,
                       what=f"a round that samples all {total} VMs")
            start = stat("armada_monitor_rounds_total")
            durations, cpus = [], []
            while len(durations) < 3:
                wait_until(lambda: stat("armada_monitor_rounds_total") > start + len(durations), 30, interval=0.2,
                           what="the next round")
                durations.append(stat("armada_monitor_round_duration_seconds"))
                cpus.append(stat("armada_monitor_round_cpu_seconds"))
            print(f"\nscale {self.HOSTS} hosts x {self.VMS} VMs: round {max(durations):.3f} s wall (max of 3), "
                  f"{max(cpus):.3f} s CPU; interval {self.INTERVAL_MS / 1000} s", flush=True)
            self.assertEqual(stat("armada_monitor_hosts_sampled"), self.HOSTS)
            # What a round costs is its CPU time; its wall time also counts
            # whatever else the machine runs (a loaded 2-core machine took
            # 2.9 s of wall for 0.14 s of CPU). bench/monitor measures speed.
            self.assertLess(max(cpus), self.INTERVAL_MS / 1000 / 2)
            self.assertEqual(stat("armada_monitor_collect_errors"), 0)
        finally:
            d.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
