"""Intelligent placement against a real armadad: ratings, auto-placement of
new VMs, host-group reserves and goals, rules, the failover reserve and the
CLI. Hosts are libvirt test-driver hosts made from node XML files with their
own CPUs and memory (test:///<file>.xml: each is its own fake hypervisor)."""
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse

import dbdirect
from armada_harness import ARMADA, Armadad

# What the monitor writes: one row per host, replaced (both engines' upsert).
POOL_UPSERT = (" ON CONFLICT(host_id) DO UPDATE SET capacity_bytes = excluded.capacity_bytes,"
               " available_bytes = excluded.available_bytes, sampled_at = excluded.sampled_at")

NODE_XML = """<node>
  <cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>
       <cores>{cpus}</cores><threads>1</threads><active>{cpus}</active></cpu>
  <memory>{kib}</memory>
</node>
"""


class PlacementTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.xml_dir = tempfile.mkdtemp(prefix="armada-place-xml-")
        cls.d = Armadad().start()
        cls.d.token = cls.d.login()

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.xml_dir, ignore_errors=True)

    @classmethod
    def host(cls, name, group, cpus, memory_mib):
        path = os.path.join(cls.xml_dir, name + ".xml")
        with open(path, "w") as f:
            f.write(NODE_XML.format(cpus=cpus, kib=memory_mib * 1024))
        cls.d.request("POST", "/api/v1/host-groups", {"path": group})   # 409 when it exists
        h, job = cls.d.add_host(name, "test://" + path, group=group)
        assert job["state"] == "succeeded", job
        return h["id"]

    def db(self):
        return dbdirect.connect(self.d)

    def ratings(self, expect=200, **q):
        st, body = self.d.request("GET", "/api/v1/placement/ratings?" + urllib.parse.urlencode(q))
        self.assertEqual(st, expect, body)
        return body

    def by_name(self, body):
        return {it["host_name"]: it for it in body["items"]}

    def group_id(self, path):
        return self.d.find("host-groups", path)["id"]

    def set_policy(self, path, body, expect=200):
        st, b = self.d.request("PUT", f"/api/v1/host-groups/{self.group_id(path)}/placement-policy", body)
        self.assertEqual(st, expect, b)
        return b


class TestRatingsAndAutoPlacement(PlacementTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.big = cls.host("a-big", "Auto", 8, 16384)
        cls.small = cls.host("a-small", "Auto", 4, 8192)
        cls.g_big = cls.host("g-big", "Goal", 16, 32768)
        cls.g_small = cls.host("g-small", "Goal", 4, 8192)

    def test_auto_placement_picks_the_host_rated_first(self):
        r = self.ratings(group="Auto", cpus=2, memory_mib=1024)
        self.assertEqual([it["host_name"] for it in r["items"]], ["a-big", "a-small"])
        self.assertEqual(r["best_host_id"], self.big)
        self.assertEqual(r["items"][0]["stars"], 5)
        self.assertTrue(all(it["rating"] > 0 and it["reason"] == "" for it in r["items"]))
        post = self.d.ok("POST", "/api/v1/placement/ratings", {"group": "Auto", "cpus": 2, "memory_mib": 1024})
        self.assertEqual(post["items"], r["items"])

        st, body = self.d.request("POST", "/api/v1/vms", {"name": "auto01", "group": "Auto", "cpus": 2, "memory_mib": 1024,
                                                          "start": True})
        self.assertEqual(st, 202, body)
        self.assertEqual(body["vm"]["host_id"], r["best_host_id"])
        self.assertEqual(body["placement"]["chosen_by"], "placement")
        self.assertEqual(body["placement"]["host"], "a-big")
        self.assertAlmostEqual(body["placement"]["rating"], r["items"][0]["rating"], places=2)
        self.assertEqual(body["vm"]["placement"]["host"], "a-big")
        job = self.d.wait_job(body["job"]["id"])
        self.assertEqual(job["state"], "succeeded", job)
        self.assertEqual(self.d.vm(body["vm"]["id"])["host_id"], self.big)
        self.assertEqual(self.d.vm(body["vm"]["id"])["state"], "running")
        ev = [e for e in self.d.ok("GET", "/api/v1/events?limit=1000")["items"] if e["kind"] == "vm.placed"
              and e["object_name"] == "auto01"]
        self.assertEqual(len(ev), 1)
        self.assertIn("Placement chose host 'a-big' for VM 'auto01' in group 'Auto'", ev[0]["message"])
        # The running VM's allocation now counts: a-big's rating went down.
        after = self.by_name(self.ratings(group="Auto", cpus=2, memory_mib=1024))
        self.assertLess(after["a-big"]["rating"], r["items"][0]["rating"])

    def test_limit_keeps_the_best_and_says_how_many(self):
        full = self.ratings(group="Goal", cpus=1, memory_mib=512)
        self.assertEqual(full["total"], len(full["items"]))
        self.assertEqual(full["total"], 2)
        top = self.ratings(group="Goal", cpus=1, memory_mib=512, limit=1)
        self.assertEqual(top["items"], full["items"][:1])
        self.assertEqual((top["total"], top["best_host_id"]), (2, full["best_host_id"]))
        post = self.d.ok("POST", "/api/v1/placement/ratings", {"group": "Goal", "limit": 1})
        self.assertEqual(post["items"], top["items"])
        self.assertEqual(self.ratings(group="Goal", limit=0)["items"], full["items"])
        for bad in (-1, "x", 100001):
            st, body = self.d.request("GET", "/api/v1/placement/ratings?" + urllib.parse.urlencode({"limit": bad}))
            self.assertIn(st, (400, 422), body)
            self.assertEqual(body["error"]["field"], "limit", body)

    def test_goal_switch_changes_the_best_host(self):
        lb = self.ratings(group="Goal", cpus=1, memory_mib=512, goal="load-balancing")
        rm = self.ratings(group="Goal", cpus=1, memory_mib=512, goal="resource-maximization")
        self.assertEqual(lb["best_host_id"], self.g_big)
        self.assertEqual(rm["best_host_id"], self.g_small)
        self.assertEqual(rm["goal"], "resource-maximization")
        # The same through the group's policy, then back to inheriting.
        self.set_policy("Goal", {"goal": "resource-maximization"})
        try:
            self.assertEqual(self.ratings(group="Goal", cpus=1, memory_mib=512)["best_host_id"], self.g_small)
        finally:
            self.set_policy("Goal", {"goal": None})
        self.assertEqual(self.ratings(group="Goal", cpus=1, memory_mib=512)["best_host_id"], self.g_big)

    def test_bad_input_names_the_field(self):
        cases = [({"cpus": -1}, 400, "cpus"), ({"cpus": "x"}, 400, "cpus"), ({"memory_mib": 1}, 400, "memory_mib"),
                 ({"group": "No/Such"}, 422, "group"), ({"group": "a/../b"}, 400, "group"), ({"goal": "fastest"}, 400, "goal"),
                 ({"disk_size": "lots"}, 400, "disk_size"), ({"name": "bad/name"}, 400, "name")]
        for q, code, field in cases:
            st, body = self.d.request("GET", "/api/v1/placement/ratings?" + urllib.parse.urlencode(q))
            self.assertEqual(st, code, (q, body))
            if field:
                self.assertEqual(body["error"]["field"], field, q)
        st, body = self.d.request("POST", "/api/v1/placement/ratings", {"cpus": -2})
        self.assertEqual((st, body["error"]["field"]), (422, "cpus"))
        st, body = self.d.request("POST", "/api/v1/placement/ratings", {"gpus": 1})
        self.assertEqual((st, body["error"]["field"]), (400, "gpus"))
        gid = self.group_id("Auto")
        for pol, code, field in [({"weights": {"cpu": -1}}, 422, "weights.cpu"), ({"weights": {"gpu": 1}}, 400, "weights"),
                                 ({"weights": "cpu=1"}, 400, "weights"), ({"goal": "fastest"}, 400, "goal"),
                                 ({"cpu_pct": 150}, 422, "cpu_pct"), ({"memory_mib": "lots"}, 400, "memory_mib"),
                                 ({"weights": {"cpu": 0, "memory": 0, "disk": 0, "disk_io": 0, "network": 0}}, 422, "weights")]:
            st, body = self.d.request("PUT", f"/api/v1/host-groups/{gid}/placement-policy", pol)
            self.assertEqual(st, code, (pol, body))
            self.assertEqual(body["error"]["field"], field, pol)
        self.assertEqual(self.d.request("GET", "/api/v1/host-groups/99999/placement-policy")[0], 404)
        st, body = self.d.request("POST", "/api/v1/vms", {"name": "nogroup", "group": "No/Such", "memory_mib": 64})
        self.assertEqual((st, body["error"]["field"]), (422, "group"))
        st, body = self.d.request("POST", "/api/v1/vms", {"name": "neg", "group": "Auto", "cpus": -1})
        self.assertEqual((st, body["error"]["field"]), (422, "cpus"))
        self.assertIsNone(self.d.find("vms", "nogroup"))

    def test_consolidation_plan(self):
        servers = [{"name": f"srv{i:02d}", "cpu": 100, "memory_mib": 4096} for i in range(10)]
        servers.append({"name": "monster", "cpu": 100, "memory_mib": 100000})
        body = {"host": {"cpus": 8, "memory_mib": 16384, "reserve": {"cpu_pct": 0, "memory_mib": 0}}, "servers": servers}
        plan = self.d.ok("POST", "/api/v1/placement/consolidation", body)
        self.assertEqual((plan["hosts_used"], plan["lower_bound"]), (3, 3))
        self.assertEqual(plan["unplaceable"], ["monster"])
        self.assertEqual(sorted(s for h in plan["hosts"] for s in h["servers"]), [f"srv{i:02d}" for i in range(10)])
        self.assertTrue(all(h["used"]["memory_mib"] <= 16384 for h in plan["hosts"]))
        self.assertEqual(plan["assignment"][10], {"server": "monster", "host": None})
        # The default reserve is the root group's (512 MiB): only 3 per host then.
        plan = self.d.ok("POST", "/api/v1/placement/consolidation", {"host": {"cpus": 8, "memory_mib": 16384}, "servers": servers[:10]})
        self.assertEqual(plan["hosts_used"], 4)
        for bad, code, field in [({"host": {"cpus": 8}, "servers": []}, 400, "servers"),
                                 ({"servers": servers}, 400, "host"),
                                 ({"host": {"cpus": -8}, "servers": servers}, 422, "host.cpus"),
                                 ({"host": {"cpus": 8}, "servers": [{"cpu": -1}]}, 422, "servers[0].cpu")]:
            st, b = self.d.request("POST", "/api/v1/placement/consolidation", bad)
            self.assertEqual((st, b["error"]["field"]), (code, field), b)


class TestCapacityAndStates(PlacementTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tiny1 = cls.host("tiny1", "Tiny", 1, 1024)
        cls.tiny2 = cls.host("tiny2", "Tiny", 2, 1536)
        cls.maint = cls.host("m-big", "Maint", 16, 65536)
        cls.ok = cls.host("m-ok", "Maint", 2, 4096)
        # A host whose libvirt cannot be reached.
        h, job = cls.d.add_host("m-gone", "test:///nonexistent/armada-place.xml", group="Maint")
        cls.gone = h["id"]

    def test_full_group_fails_with_reasons_and_creates_nothing(self):
        n_vms, n_jobs = self.d.count("vms"), self.d.count("jobs")
        st, body = self.d.request("POST", "/api/v1/vms", {"name": "huge01", "group": "Tiny", "cpus": 1, "memory_mib": 4096})
        self.assertEqual(st, 409, body)
        self.assertEqual(body["error"]["code"], "no_capacity")
        msg = body["error"]["message"]
        self.assertIn("Cannot place VM 'huge01'", msg)
        self.assertIn("host 'tiny1': memory: needs 4096 MiB, 512 MiB left after the 512 MiB reserve", msg)
        self.assertIn("host 'tiny2': memory: needs 4096 MiB, 1024 MiB left after the 512 MiB reserve", msg)
        self.assertEqual(self.d.count("vms"), n_vms)
        self.assertEqual(self.d.count("jobs"), n_jobs)
        self.assertIsNone(self.d.find("vms", "huge01"))
        r = self.ratings(group="Tiny", memory_mib=4096)
        self.assertIsNone(r["best_host_id"])
        self.assertTrue(all(it["rating"] == 0 and it["stars"] == 0 for it in r["items"]))

    def test_maintenance_and_unreachable_hosts_are_never_chosen(self):
        with self.db() as db:
            db.execute("UPDATE host SET state = 'maintenance' WHERE id = ?", (self.maint,))
        try:
            r = self.by_name(self.ratings(group="Maint", memory_mib=512))
            self.assertEqual(r["m-big"]["rating"], 0)
            self.assertEqual(r["m-big"]["reason"], "host is in maintenance")
            self.assertEqual(r["m-gone"]["rating"], 0)
            self.assertEqual(r["m-gone"]["reason"], "host is unreachable")
            self.assertGreater(r["m-ok"]["rating"], 0)
            st, body = self.d.request("POST", "/api/v1/vms", {"name": "mvm01", "group": "Maint", "memory_mib": 512})
            self.assertEqual(st, 202, body)
            self.assertEqual(body["vm"]["host_id"], self.ok)
            self.d.wait_job(body["job"]["id"])
            # Too big for the only host that is up: refused, though m-big is empty.
            st, body = self.d.request("POST", "/api/v1/vms", {"name": "mvm02", "group": "Maint", "memory_mib": 8192})
            self.assertEqual(st, 409, body)
            self.assertIn("host 'm-big': host is in maintenance", body["error"]["message"])
            self.assertIn("host 'm-gone': host is unreachable", body["error"]["message"])
        finally:
            with self.db() as db:
                db.execute("UPDATE host SET state = 'ok' WHERE id = ?", (self.maint,))

    def test_measured_usage_counts_when_fresh(self):
        import time
        now = int(time.time() * 1000)
        base = self.by_name(self.ratings(group="Maint", memory_mib=512))["m-ok"]["rating"]
        with self.db() as db:
            db.execute("INSERT INTO host_usage(host_id, cpu_pct, memory_used_mib, disk_io_pct, network_pct, sampled_at)"
                       " VALUES (?, 90, 3500, 50, 50, ?) ON CONFLICT(host_id) DO UPDATE SET cpu_pct = excluded.cpu_pct,"
                       " memory_used_mib = excluded.memory_used_mib, disk_io_pct = excluded.disk_io_pct,"
                       " network_pct = excluded.network_pct, sampled_at = excluded.sampled_at", (self.ok, now))
        try:
            r = self.by_name(self.ratings(group="Maint", memory_mib=512))["m-ok"]
            self.assertEqual(r["rating"], 0)
            self.assertIn("memory: needs 512 MiB, 84 MiB left after the 512 MiB reserve", r["reason"])
            with self.db() as db:   # a stale sample is ignored: allocations again
                db.execute("UPDATE host_usage SET sampled_at = ? WHERE host_id = ?", (now - 600000, self.ok))
            self.assertEqual(self.by_name(self.ratings(group="Maint", memory_mib=512))["m-ok"]["rating"], base)
        finally:
            with self.db() as db:
                db.execute("DELETE FROM host_usage WHERE host_id = ?", (self.ok,))

    def test_ratings_answer_while_another_manager_writes_hosts(self):
        # Another writer of the database (a second manager, the monitor of
        # an older one, this test's dbdirect) commits host rows while
        # ratings are asked for. On PostgreSQL every connection of armadad
        # hears those commits; the read model's hook, re-reading, used to
        # hear the next one and wait for its own lock for ever (the request
        # timed out after 30 s). Each answer must come.
        import threading
        stop, started, failed = threading.Event(), threading.Event(), []

        def writer():
            try:
                db = self.db()
                try:
                    while not stop.is_set():
                        db.execute("UPDATE host SET state = state WHERE id IN (?, ?)", (self.tiny1, self.tiny2))
                        db.commit()
                        started.set()
                finally:
                    db.close()
            except Exception as e:  # noqa: BLE001 - reported below
                failed.append(e)

        t = threading.Thread(target=writer, daemon=True)
        t.start()
        try:
            # the writer is committing before the first request (its thread
            # may start late on a loaded machine)
            self.assertTrue(started.wait(60) or failed, "the writer committed nothing in 60 s")
            for _ in range(30):
                self.assertEqual(len(self.ratings(group="Tiny", memory_mib=256)["items"]), 2)
        finally:
            stop.set()
            t.join(60)
        self.assertFalse(t.is_alive())
        self.assertEqual(failed, [])

    def test_disk_space_counts_once_pools_are_known(self):
        gib = 1 << 30
        a = self.host("disk-a", "Disk", 4, 8192)
        b = self.host("disk-b", "Disk", 4, 8192)
        # Until every candidate reports its pool, disk space is not rated.
        self.assertIsNotNone(self.ratings(group="Disk", disk_size="500G")["best_host_id"])
        with self.db() as db:   # as the monitor records them
            db.execute("INSERT INTO host_pool(host_id, capacity_bytes, available_bytes, sampled_at) VALUES (?, ?, ?, 0)" + POOL_UPSERT,
                       (a, 50 * gib, 45 * gib))
            db.execute("INSERT INTO host_pool(host_id, capacity_bytes, available_bytes, sampled_at) VALUES (?, ?, ?, 1)" + POOL_UPSERT,
                       (b, 200 * gib, 200 * gib))
        r = self.by_name(self.ratings(group="Disk", disk_size="40G"))
        self.assertEqual(r["disk-a"]["rating"], 0)
        self.assertEqual(r["disk-a"]["reason"], "disk space: needs 40 GiB, 35 GiB left after the 10 GiB reserve")
        self.assertGreater(r["disk-b"]["rating"], 0)
        st, body = self.d.request("POST", "/api/v1/vms", {"name": "disk01", "group": "Disk", "memory_mib": 64, "disk_size": "40G"})
        self.assertEqual(st, 202, body)
        self.assertEqual(body["vm"]["host_id"], b)
        self.d.wait_job(body["job"]["id"])


class TestReservesAndRules(PlacementTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.r1 = cls.host("r1", "Res/Child", 2, 2048)
        cls.h1 = cls.host("x1", "Rules", 4, 8192)
        cls.h2 = cls.host("x2", "Rules", 4, 8192)
        cls.h3 = cls.host("x3", "Rules", 4, 8192)

    def test_reserves_are_inherited_and_overridden(self):
        self.assertGreater(self.by_name(self.ratings(group="Res", memory_mib=1024))["r1"]["rating"], 0)
        p = self.set_policy("Res", {"memory_mib": 1536, "cpu_pct": 20})
        self.assertEqual(p["own"]["memory_mib"], 1536)
        self.assertEqual(p["effective"]["inherited_from"]["memory_mib"], "Res")
        self.assertEqual(p["effective"]["inherited_from"]["disk_gib"], "default")
        child = self.d.ok("GET", f"/api/v1/host-groups/{self.group_id('Res/Child')}/placement-policy")
        self.assertIsNone(child["own"]["memory_mib"])
        self.assertEqual(child["effective"]["memory_mib"], 1536)
        self.assertEqual(child["effective"]["cpu_pct"], 20)
        self.assertEqual(child["effective"]["inherited_from"]["memory_mib"], "Res")
        r = self.by_name(self.ratings(group="Res", memory_mib=1024))["r1"]
        self.assertEqual(r["rating"], 0)
        self.assertEqual(r["stars"], 0)
        self.assertEqual(r["reason"], "memory: needs 1024 MiB, 512 MiB left after the 1536 MiB reserve")
        # The child overrides; clearing the override inherits again.
        child = self.set_policy("Res/Child", {"memory_mib": 256})
        self.assertEqual(child["effective"]["inherited_from"]["memory_mib"], "Res/Child")
        self.assertGreater(self.by_name(self.ratings(group="Res", memory_mib=1024))["r1"]["rating"], 0)
        child = self.set_policy("Res/Child", {"memory_mib": None})
        self.assertEqual(child["effective"]["memory_mib"], 1536)
        self.assertEqual(self.by_name(self.ratings(group="Res", memory_mib=1024))["r1"]["rating"], 0)
        root = self.d.ok("GET", "/api/v1/host-groups/1/placement-policy")
        self.assertEqual(root["effective"]["memory_mib"], 512)
        self.assertEqual(root["effective"]["goal"], "load-balancing")
        self.assertEqual(root["effective"]["weights"], {"cpu": 1, "memory": 1, "disk": 0.5, "disk_io": 0.5, "network": 0.5})
        self.set_policy("Res", {"memory_mib": None, "cpu_pct": None})

    def test_anti_affinity_and_affinity(self):
        web01 = self.d.create_vm("web01", "x1", memory_mib=256)
        web02 = self.d.create_vm("web02", "x2", memory_mib=256)
        db01 = self.d.create_vm("db01", "x3", memory_mib=256)
        rule = self.d.ok("POST", "/api/v1/placement/rules", {"name": "web-apart", "kind": "anti-affinity", "vms": ["web01", "web02"]})
        self.assertEqual(rule["vms"], ["web01", "web02"])
        st, body = self.d.request("POST", "/api/v1/placement/rules", {"name": "web-apart", "kind": "anti-affinity", "vms": []})
        self.assertEqual((st, body["error"]["field"]), (409, "name"))
        st, body = self.d.request("POST", "/api/v1/placement/rules", {"name": "r2", "kind": "apart", "vms": []})
        self.assertEqual((st, body["error"]["field"]), (400, "kind"))
        st, body = self.d.request("POST", "/api/v1/placement/rules", {"name": "r2", "kind": "affinity", "vms": ["nope"]})
        self.assertEqual((st, body["error"]["field"]), (422, "vms"))
        # Where could web02 go (e.g. when x2 is drained)? Never next to web01.
        r = self.by_name(self.ratings(group="Rules", memory_mib=256, name="web02"))
        self.assertEqual(r["x1"]["rating"], 0)
        self.assertEqual(r["x1"]["reason"], "anti-affinity: runs 'web01', which must not share a host with 'web02'")
        self.assertGreater(r["x2"]["rating"], 0)
        self.assertGreater(r["x3"]["rating"], 0)
        # Affinity: app01 goes where db01 runs.
        self.d.create_vm("app01", "x1", memory_mib=128)
        aff = self.d.ok("POST", "/api/v1/placement/rules", {"name": "db-app", "kind": "affinity", "vms": ["db01", "app01"]})
        r = self.ratings(group="Rules", memory_mib=128, name="app01")
        self.assertEqual(r["best_host_id"], self.h3)
        self.assertIn("affinity: 'app01' must share a host with 'db01', which runs on 'x3'", self.by_name(r)["x1"]["reason"])
        # PATCH replaces the members; DELETE removes the rule.
        rule = self.d.ok("PATCH", f"/api/v1/placement/rules/{rule['id']}", {"vms": ["web01"]})
        self.assertEqual(rule["vms"], ["web01"])
        self.assertGreater(self.by_name(self.ratings(group="Rules", memory_mib=256, name="web02"))["x1"]["rating"], 0)
        names = [x["name"] for x in self.d.ok("GET", "/api/v1/placement/rules")["items"]]
        self.assertEqual(names, ["db-app", "web-apart"])
        self.assertEqual(self.d.request("DELETE", f"/api/v1/placement/rules/{aff['id']}")[0], 204)
        self.assertEqual(self.d.request("GET", f"/api/v1/placement/rules/{aff['id']}")[0], 404)
        self.d.ok("DELETE", f"/api/v1/placement/rules/{rule['id']}")
        for v in (web01, web02, db01):
            self.assertEqual(self.d.vm(v["id"])["state"], "stopped")

    def test_read_only_user_reads_but_changes_nothing(self):
        self.d.ok("POST", "/api/v1/users", {"name": "ro-place", "password": "ro-password", "role": "read-only"})
        tok = self.d.login("ro-place", "ro-password")
        self.assertEqual(self.d.request("GET", "/api/v1/placement/ratings?group=Rules", token=tok)[0], 200)
        self.assertEqual(self.d.request("GET", "/api/v1/placement/rules", token=tok)[0], 200)
        gid = self.group_id("Rules")
        self.assertEqual(self.d.request("GET", f"/api/v1/host-groups/{gid}/placement-policy", token=tok)[0], 200)
        self.assertEqual(self.d.request("PUT", f"/api/v1/host-groups/{gid}/placement-policy", {"cpu_pct": 1}, token=tok)[0], 403)
        self.d.create_vm("ro-vm", "x1", memory_mib=64)
        st, _ = self.d.request("POST", "/api/v1/placement/rules", {"name": "ro", "kind": "affinity", "vms": ["ro-vm"]}, token=tok)
        self.assertEqual(st, 403)
        rule = self.d.ok("POST", "/api/v1/placement/rules", {"name": "ro", "kind": "affinity", "vms": ["ro-vm"]})
        self.assertEqual(self.d.request("DELETE", f"/api/v1/placement/rules/{rule['id']}", token=tok)[0], 403)
        self.assertEqual(self.d.request("PATCH", f"/api/v1/placement/rules/{rule['id']}", {"vms": []}, token=tok)[0], 403)
        self.d.ok("DELETE", f"/api/v1/placement/rules/{rule['id']}")

    def test_cluster_failover_reserve(self):
        # Cluster tables belong to HA; fill them directly. tolerate 1 over
        # three members: the member with the most HA memory (x1, 3000 MiB)
        # is spread over the other two: 1500 MiB kept free on every member.
        # A real VM on x1 (a row alone would be marked missing by the next
        # reconcile, and a missing VM needs no room).
        vm_id = self.d.create_vm("ha-big", "x1", memory_mib=3000, start=True)["id"]
        with self.db() as db:
            db.execute("INSERT INTO vm_ha(vm_id, priority) VALUES (?, 1)", (vm_id,))
            db.execute("INSERT INTO cluster(name, shared_storage, tolerate, created_at) VALUES ('c1', '/srv/shared', 1, 0)")
            cid = db.execute("SELECT id FROM cluster WHERE name = 'c1'").fetchone()[0]
            for h in (self.h1, self.h2, self.h3):
                db.execute("INSERT INTO cluster_member(cluster_id, host_id) VALUES (?, ?)", (cid, h))
        try:
            # x2: 8192 MiB - 512 reserve = 7680 MiB; 6180 after the failover reserve.
            r = self.by_name(self.ratings(group="Rules", memory_mib=6500))
            self.assertEqual(r["x2"]["rating"], 0)
            self.assertEqual(r["x2"]["reason"], "failover reserve: needs 6500 MiB, 6180 MiB left after the 512 MiB reserve"
                                                " and the 1500 MiB kept free for the cluster's N+1 failover")
            self.assertGreater(self.by_name(self.ratings(group="Rules", memory_mib=5000))["x2"]["rating"], 0)
        finally:
            with self.db() as db:
                db.execute("DELETE FROM cluster WHERE name = 'c1'")
            self.d.ok("DELETE", f"/api/v1/vms/{vm_id}")
        self.assertGreater(self.by_name(self.ratings(group="Rules", memory_mib=6500))["x2"]["rating"], 0)


class TestPlacementCli(PlacementTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.host("c-big", "Cli", 8, 8192)
        cls.host("c-small", "Cli", 2, 1024)
        cls.home = tempfile.mkdtemp(prefix="armada-place-home-")
        cls.env = dict(os.environ, HOME=cls.home, ARMADA_URL=cls.d.url, ARMADA_TOKEN=cls.d.token,
                       ASAN_OPTIONS="detect_leaks=0", LANG="C.UTF-8")
        cls.env.pop("LC_ALL", None)
        cls.env.pop("LC_CTYPE", None)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.home, ignore_errors=True)

    def run_cli(self, *args, env=None):
        return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env or self.env, timeout=60)

    def cli(self, *args):
        r = self.run_cli(*args)
        self.assertEqual(r.returncode, 0, f"armada {' '.join(args)}: {r.stderr}")
        return r.stdout

    def test_rate_limit(self):
        out = self.cli("vm", "rate", "--group", "Cli", "--limit", "1")
        self.assertIn("(the best 1 of 2 hosts)", out)
        self.assertEqual([l.split()[0] for l in out.splitlines()[1:-1]], ["c-big"], out)
        r = self.run_cli("vm", "rate", "--limit", "0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--limit must be a whole number", r.stderr)

    def test_rate_set_reserves_create_and_rules(self):
        out = self.cli("vm", "rate", "--cpus", "1", "--memory", "1024", "--group", "Cli")
        lines = out.splitlines()
        self.assertIn("STARS", lines[0])
        self.assertTrue(lines[1].startswith("c-big"), out)
        self.assertIn("★★★★★", lines[1])
        self.assertIn("☆☆☆☆☆", lines[2])
        self.assertIn("memory: needs 1024 MiB, 512 MiB left after the 512 MiB reserve", lines[2])
        ascii_env = dict(self.env, LANG="C")
        r = self.run_cli("vm", "rate", "--memory", "1024", "--group", "Cli", env=ascii_env)
        self.assertIn("*****", r.stdout)
        self.assertNotIn("★", r.stdout)
        js = self.run_cli("--output", "json", "vm", "rate", "--memory", "1024", "--group", "Cli")
        import json
        self.assertEqual(json.loads(js.stdout)["items"][0]["stars"], 5)

        out = self.cli("group", "set-reserves", "Cli", "--memory", "256", "--cpu", "5", "--goal", "resource-maximization",
                       "--weights", "cpu=2,memory=1")
        self.assertIn("resource-maximization", out)
        out = self.cli("group", "show-policy", "Cli")
        self.assertIn("memory reserve", out)
        self.assertIn("256 MiB", out)
        self.assertIn("default", out)
        r = self.run_cli("group", "set-reserves", "Cli", "--weights", "gpu=1")
        self.assertEqual(r.returncode, 1)
        self.assertIn("unknown resource 'gpu'", r.stderr)
        r = self.run_cli("group", "set-reserves", "Cli", "--goal", "fast")
        self.assertEqual(r.returncode, 1)
        self.cli("group", "set-reserves", "Cli", "--memory", "inherit", "--cpu", "inherit", "--goal", "inherit",
                 "--weights", "inherit")

        out = self.cli("vm", "create", "cli-auto", "--group", "Cli", "--cpus", "1", "--memory", "256", "--disk", "1G", "--wait")
        self.assertIn("placement chose host 'c-big'", out)
        self.assertEqual(self.d.find("vms", "cli-auto")["host_id"], self.d.find("hosts", "c-big")["id"])
        r = self.run_cli("vm", "create", "cli-huge", "--group", "Cli", "--cpus", "1", "--memory", "65536", "--disk", "1G")
        self.assertEqual(r.returncode, 1)
        self.assertIn("Cannot place VM 'cli-huge'", r.stderr)
        r = self.run_cli("vm", "create", "cli-wrong", "--host", "c-small", "--group", "Auto", "--cpus", "1", "--memory", "64",
                         "--disk", "1G")
        self.assertEqual(r.returncode, 1)

        self.cli("vm", "create", "cli-b", "--host", "c-big", "--cpus", "1", "--memory", "64", "--disk", "1G", "--wait")
        out = self.cli("rule", "create", "cli-apart", "--kind", "anti-affinity", "--vms", "cli-auto,cli-b")
        self.assertIn("cli-auto,cli-b", out)
        self.assertIn("cli-apart", self.cli("rule", "list"))
        out = self.cli("vm", "rate", "--memory", "64", "--group", "Cli", "--name", "cli-b")
        self.assertIn("anti-affinity: runs 'cli-auto', which must not share a host with 'cli-b'", out)
        self.cli("rule", "update", "cli-apart", "--vms", "cli-auto")
        self.cli("rule", "delete", "cli-apart")
        self.assertNotIn("cli-apart", self.cli("rule", "list"))
        r = self.run_cli("rule", "delete", "cli-apart")
        self.assertEqual(r.returncode, 1)

        plan = os.path.join(self.home, "plan.json")
        with open(plan, "w") as f:
            import json as _json
            _json.dump({"host": {"cpus": 8, "memory_mib": 16384, "reserve": {"memory_mib": 0}},
                        "servers": [{"name": f"p{i}", "cpu": 50, "memory_mib": 8192} for i in range(4)]}, f)
        out = self.cli("plan", "consolidate", plan)
        self.assertIn("2 hosts needed (lower bound 2)", out)
        self.assertIn("p0", out)
        out = self.cli("plan", "consolidate", plan, "--host-memory", "32768")
        self.assertIn("1 host needed (lower bound 1)", out)


if __name__ == "__main__":
    unittest.main()
