"""Placement hardening (issue 10) against a real armadad with libvirt
test-driver hosts of known memory (test:///<file>.xml, each its own fake
hypervisor):

- simultaneous placements never overbook a host: choosing a host and
  recording the VM (or a move's reservation) is one step;
- a named host without the memory is refused unless an administrator forces;
- maintenance and automatic migration started by a delegated administrator
  stay inside its groups, and no answer names a host outside them;
- placement rules are shown only within scope; read-only cannot write them;
- an empty query value is a 400 naming it; the consolidation plan refuses
  unknown fields at every level."""
import os
import shutil
import subprocess
import tempfile
import threading
import unittest

from armada_harness import ARMADA, Armadad
from test_library import qcow2
from test_placement import PlacementTestCase

RESERVE_MIB = 512       # the root group's default memory reserve
ACTIVE = ("running", "paused", "creating", "shutting-down", "suspended", "unknown")


class HardeningCase(PlacementTestCase):
    """PlacementTestCase's armadad and test hosts of a chosen size, with users."""

    @classmethod
    def user(cls, name, role, scopes=None):
        body = {"name": name, "password": name + "-password", "role": role}
        if scopes:
            body["scopes"] = scopes
        cls.d.ok("POST", "/api/v1/users", body)
        return cls.d.login(name, name + "-password")

    def allocations(self, host_ids):
        """{host_id: (capacity MiB, MiB of the VMs in an active state there)}."""
        out = {}
        with self.db() as db:
            for hid in host_ids:
                cap = db.execute("SELECT memory_mib FROM host WHERE id = ?", (hid,)).fetchone()[0]
                used = db.execute("SELECT coalesce(sum(memory_mib), 0) FROM vm WHERE host_id = ? AND state IN (%s)"
                                  % ",".join("?" * len(ACTIVE)), (hid,) + ACTIVE).fetchone()[0]
                out[hid] = (cap, used)
        return out

    def fire(self, bodies, token=None):
        """POSTs every body to /vms at once (one thread each, released
        together); returns [(status, body)] in the order given."""
        results = [None] * len(bodies)
        gate = threading.Barrier(len(bodies))

        def one(i):
            gate.wait()
            results[i] = self.d.request("POST", "/api/v1/vms", bodies[i], token=token)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertTrue(all(r is not None for r in results), "a request did not return")
        return results

    def wait_jobs(self, results):
        for st, b in results:
            if st == 202:
                self.d.wait_job(b["job"]["id"], timeout=120)


class TestSimultaneousPlacement(HardeningCase):
    VM_MIB = 3000
    PER_HOST = 2                       # (6600 - 512) // 3000
    HOSTS = 5

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.race = [cls.host(f"race{i}", "Race", 8, 6600) for i in range(cls.HOSTS)]
        cls.one = cls.host("solo", "Solo", 8, 6600)

    def test_parallel_auto_placements_take_exactly_what_fits(self):
        bodies = [{"name": f"race-{i:02d}", "group": "Race", "cpus": 1, "memory_mib": self.VM_MIB, "start": True}
                  for i in range(24)]
        results = self.fire(bodies)
        accepted = [b for st, b in results if st == 202]
        refused = [(st, b) for st, b in results if st != 202]
        self.assertEqual(len(accepted), self.HOSTS * self.PER_HOST, results)
        for st, b in refused:
            self.assertEqual((st, b["error"]["code"]), (409, "no_capacity"), b)
        per_host = {}
        for b in accepted:
            per_host[b["vm"]["host_id"]] = per_host.get(b["vm"]["host_id"], 0) + 1
        self.assertEqual(per_host, {h: self.PER_HOST for h in self.race})
        for hid, (cap, used) in self.allocations(self.race).items():
            self.assertLessEqual(used, cap - RESERVE_MIB, f"host {hid} is overbooked")
        # Still true once the jobs have run and the VMs are running.
        self.wait_jobs(results)
        for hid, (cap, used) in self.allocations(self.race).items():
            self.assertLessEqual(used, cap - RESERVE_MIB, f"host {hid} is overbooked")
        self.assertEqual(sum(used for _, used in self.allocations(self.race).values()),
                         self.HOSTS * self.PER_HOST * self.VM_MIB)

    def test_parallel_creations_on_a_named_host_take_exactly_what_fits(self):
        bodies = [{"name": f"solo-{i}", "host": "solo", "cpus": 1, "memory_mib": self.VM_MIB, "start": True} for i in range(8)]
        results = self.fire(bodies)
        self.assertEqual(sum(1 for st, _ in results if st == 202), self.PER_HOST, results)
        for st, b in results:
            if st != 202:
                self.assertEqual((st, b["error"]["code"], b["error"]["field"]), (422, "no_capacity", "host"), b)
                self.assertIn("Cannot create VM", b["error"]["message"])
                self.assertIn("host 'solo'", b["error"]["message"])
        self.wait_jobs(results)
        (cap, used), = self.allocations([self.one]).values()
        self.assertLessEqual(used, cap - RESERVE_MIB)


class TestNamedHostMemory(HardeningCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.small = cls.host("small", "Named", 2, 2048)
        cls.deleg = cls.user("named-deleg", "delegated-administrator", ["Named"])

    def test_named_host_without_memory_is_refused_unless_an_administrator_forces(self):
        n_vms = self.d.count("vms")
        body = {"name": "fat01", "host": "small", "cpus": 1, "memory_mib": 4096}
        st, b = self.d.request("POST", "/api/v1/vms", body)
        self.assertEqual((st, b["error"]["code"], b["error"]["field"]), (422, "no_capacity", "host"), b)
        self.assertIn("Cannot create VM 'fat01' on host 'small': memory: needs 4096 MiB, 1536 MiB left after the 512 MiB reserve",
                      b["error"]["message"])
        self.assertEqual(self.d.count("vms"), n_vms)
        # A delegated administrator may not force, even in its own group.
        st, b = self.d.request("POST", "/api/v1/vms", dict(body, force=True), token=self.deleg)
        self.assertEqual((st, b["error"]["field"]), (403, "force"), b)
        st, b = self.d.request("POST", "/api/v1/vms", dict(body, force="yes"))
        self.assertEqual((st, b["error"]["field"]), (400, "force"), b)
        st, b = self.d.request("POST", "/api/v1/vms", {"name": "fat01", "cpus": 1, "memory_mib": 64, "force": True})
        self.assertEqual((st, b["error"]["field"]), (400, "force"), b)
        self.assertEqual(self.d.count("vms"), n_vms)
        # An administrator may.
        st, b = self.d.request("POST", "/api/v1/vms", dict(body, force=True))
        self.assertEqual(st, 202, b)
        self.assertEqual(b["vm"]["host_id"], self.small)
        self.d.wait_job(b["job"]["id"])
        audit = [a for a in self.d.ok("GET", "/api/v1/audit?limit=50")["items"] if a["object_name"] == "fat01"]
        self.assertTrue(any(a["result"] == "accepted" and "forced" in (a["detail"] or "") for a in audit), audit)
        # What fits is still accepted without force.
        vm = self.d.create_vm("thin01", "small", memory_mib=256, force=False)
        self.assertEqual(vm["host_id"], self.small)

    def test_cli_force(self):
        home = tempfile.mkdtemp(prefix="armada-hard-place-home-")
        try:
            env = dict(os.environ, HOME=home, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, ASAN_OPTIONS="detect_leaks=0")

            def cli(*args):
                return subprocess.run([ARMADA, "vm", "create", *args], capture_output=True, text=True, env=env, timeout=60)

            r = cli("cli-fat", "--host", "small", "--cpus", "1", "--memory", "4096", "--disk", "1G")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("memory: needs 4096 MiB", r.stderr)
            self.assertIsNone(self.d.find("vms", "cli-fat"))
            r = cli("cli-fat", "--cpus", "1", "--memory", "4096", "--disk", "1G", "--force")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("--force goes with --host", r.stderr)
            r = cli("cli-fat", "--host", "small", "--cpus", "1", "--memory", "4096", "--disk", "1G", "--force", "--wait")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(self.d.find("vms", "cli-fat")["host_id"], self.small)
        finally:
            shutil.rmtree(home, ignore_errors=True)


class TestScope(HardeningCase):
    """Two groups: a delegated administrator of A, whose hosts are full,
    while only B (outside its scope) has room."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a1 = cls.host("alpha-one", "A", 4, 4096)
        cls.a2 = cls.host("alpha-two", "A", 4, 1024)
        cls.b1 = cls.host("bravo-big", "B", 16, 65536)
        cls.deleg = cls.user("deleg-a", "delegated-administrator", ["A"])
        cls.ro = cls.user("ro-rules", "read-only")
        cls.self_service = cls.user("selfie", "self-service")
        # A running VM (no disk, so its move needs no storage) on alpha-one.
        cls.vm = cls.d.create_vm("a-vm", "alpha-one", memory_mib=2048, start=True)
        cls.vm_b = cls.d.create_vm("b-vm", "bravo-big", memory_mib=64)
        # A template whose VMs fit only on bravo-big.
        share = os.path.join(cls.xml_dir, "share")
        os.makedirs(share)
        qcow2(os.path.join(share, "base.qcow2"), 1 << 30)
        r = cls.d.ok("POST", "/api/v1/library/shares", {"path": share})
        assert cls.d.wait_job(r["job"]["id"])["state"] == "succeeded"
        cls.tpl = cls.d.ok("POST", "/api/v1/templates", {"name": "big-tpl", "image": "base.qcow2", "cpus": 1, "memory_mib": 4096})

    def assertNamesNoOtherHost(self, text):
        for name in ("bravo-big", "bravo"):
            self.assertNotIn(name, str(text))

    def reservations(self):
        with self.db() as db:
            return db.execute("SELECT vm_id, host_id FROM placement_reservation").fetchall()

    def test_maintenance_by_delegated_admin_stays_in_its_groups(self):
        self.assertEqual(self.d.vm(self.vm["id"])["state"], "running")
        last_job = max(j["id"] for j in self.d.ok("GET", "/api/v1/jobs?limit=1000")["items"])
        st, b = self.d.request("POST", f"/api/v1/hosts/{self.a1}/maintenance", {"on": True}, token=self.deleg)
        self.assertEqual(st, 202, b)
        job = self.d.wait_job(b["job"]["id"], token=self.deleg)
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("Host 'alpha-one' stays in service", job["error"])
        self.assertIn("host 'alpha-two': memory", job["error"])
        self.assertNamesNoOtherHost(job)
        self.assertEqual(self.d.vm(self.vm["id"])["host_id"], self.a1)
        self.assertEqual(self.d.ok("GET", f"/api/v1/hosts/{self.a1}")["state"], "ok")
        # No migration was started towards B, and no room is left promised.
        jobs = self.d.ok("GET", "/api/v1/jobs?limit=1000")["items"]
        self.assertFalse([j for j in jobs if j["kind"] == "vm.migrate" and j["id"] > last_job], jobs)
        self.assertEqual(self.reservations(), [])

    def test_automatic_migration_by_delegated_admin_stays_in_its_groups(self):
        st, b = self.d.request("POST", f"/api/v1/vms/{self.vm['id']}/migrate", {}, token=self.deleg)
        self.assertEqual(st, 202, b)
        job = self.d.wait_job(b["job"]["id"], token=self.deleg)
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("No host can take VM 'a-vm'", job["error"])
        self.assertIn("host 'alpha-two'", job["error"])
        self.assertNamesNoOtherHost(job)
        self.assertEqual(self.d.vm(self.vm["id"])["host_id"], self.a1)
        self.assertEqual(self.reservations(), [])

    def test_migration_to_a_named_host_needs_its_memory(self):
        # alpha-two has 1 GiB: a-vm's 2 GiB do not fit after the reserve.
        r = self.d.ok("POST", f"/api/v1/vms/{self.vm['id']}/migrate", {"to": "alpha-two"})
        job = self.d.wait_job(r["job"]["id"])
        self.assertEqual(job["state"], "failed", job)
        self.assertIn("Cannot move VM 'a-vm'", job["error"])
        self.assertIn("host 'alpha-two' cannot take it: memory: needs 2048 MiB", job["error"])
        self.assertEqual(self.d.vm(self.vm["id"])["host_id"], self.a1)
        self.assertEqual(self.reservations(), [])

    def test_administrator_placement_still_spans_the_estate(self):
        # The same migration by an administrator picks B (the test driver
        # cannot really migrate: the job then fails naming it), and the room
        # it reserved there is free again afterwards.
        r = self.d.ok("POST", f"/api/v1/vms/{self.vm['id']}/migrate", {})
        job = self.d.wait_job(r["job"]["id"])
        self.assertIn("bravo-big", str(job))
        self.assertEqual(self.reservations(), [])

    def test_create_and_ratings_errors_name_only_hosts_in_scope(self):
        st, b = self.d.request("POST", "/api/v1/vms", {"name": "too-big", "cpus": 1, "memory_mib": 8192}, token=self.deleg)
        self.assertEqual((st, b["error"]["code"]), (409, "no_capacity"), b)
        self.assertIn("alpha-two", b["error"]["message"])
        self.assertNamesNoOtherHost(b)
        r = self.d.ok("GET", "/api/v1/placement/ratings?group=A&memory_mib=8192", token=self.deleg)
        self.assertEqual(sorted(it["host_name"] for it in r["items"]), ["alpha-one", "alpha-two"])
        self.assertNamesNoOtherHost(r)
        st, b = self.d.request("GET", "/api/v1/placement/ratings?memory_mib=64", token=self.deleg)
        self.assertEqual(st, 403, b)
        self.assertNamesNoOtherHost(b)
        # A self-service user learns no host at all: not from placement,
        # not from the refusal.
        for body in ({"name": "ss-vm", "cpus": 1, "memory_mib": 64}, {"name": "ss-vm", "cpus": 1, "memory_mib": 1 << 20}):
            st, b = self.d.request("POST", "/api/v1/vms", body, token=self.self_service)
            self.assertEqual(st, 403, b)
            for name in ("alpha", "bravo"):
                self.assertNotIn(name, str(b))
        st, b = self.d.request("GET", "/api/v1/placement/ratings?memory_mib=64", token=self.self_service)
        self.assertEqual(st, 403, b)
        self.assertIsNone(self.d.find("vms", "ss-vm"))

    def test_deploy_by_delegated_admin_stays_in_its_groups(self):
        st, b = self.d.request("POST", f"/api/v1/templates/{self.tpl['id']}/deploy", {"name": "dep-a", "start": False},
                               token=self.deleg)
        self.assertEqual((st, b["error"]["code"]), (409, "no_capacity"), b)
        self.assertIn("alpha-two", b["error"]["message"])
        self.assertNamesNoOtherHost(b)
        self.assertIsNone(self.d.find("vms", "dep-a"))

    def test_reserved_room_counts_as_used(self):
        # A move in flight to alpha-two holds 400 MiB there: a VM that fits
        # only without it is refused, and fits again once it is released.
        body = {"name": "fits-a2", "host": "alpha-two", "cpus": 1, "memory_mib": 300}
        with self.db() as db:
            db.execute("INSERT INTO placement_reservation(vm_id, host_id, cpus, memory_mib, disk_bytes, created_at)"
                       " VALUES (?, ?, 1, 400, 0, 0)", (self.vm_b["id"], self.a2))
        try:
            r = {it["host_name"]: it for it in self.d.ok("GET", "/api/v1/placement/ratings?group=A&memory_mib=300")["items"]}
            self.assertEqual(r["alpha-two"]["rating"], 0)
            self.assertIn("memory: needs 300 MiB, 112 MiB left", r["alpha-two"]["reason"])
            st, b = self.d.request("POST", "/api/v1/vms", body)
            self.assertEqual(st, 422, b)
        finally:
            with self.db() as db:
                db.execute("DELETE FROM placement_reservation")
        vm = self.d.create_vm("fits-a2", "alpha-two", memory_mib=300)
        self.d.ok("DELETE", f"/api/v1/vms/{vm['id']}")

    def test_rules_are_listed_only_within_scope(self):
        mine = self.d.ok("POST", "/api/v1/placement/rules", {"name": "rule-a", "kind": "anti-affinity", "vms": ["a-vm"]})
        theirs = self.d.ok("POST", "/api/v1/placement/rules", {"name": "rule-b-secret", "kind": "affinity", "vms": ["b-vm"]})
        both = self.d.ok("POST", "/api/v1/placement/rules", {"name": "rule-both", "kind": "affinity", "vms": ["a-vm", "b-vm"]})
        try:
            items = self.d.ok("GET", "/api/v1/placement/rules", token=self.deleg)["items"]
            self.assertEqual(sorted(r["name"] for r in items), ["rule-a", "rule-both"])
            self.assertNotIn("rule-b-secret", str(items))
            self.assertNotIn("b-vm", str(items))
            self.assertEqual({r["name"]: r["vms"] for r in items}["rule-both"], ["a-vm"])
            self.assertEqual(self.d.request("GET", f"/api/v1/placement/rules/{theirs['id']}", token=self.deleg)[0], 404)
            st, b = self.d.request("GET", f"/api/v1/placement/rules/{both['id']}", token=self.deleg)
            self.assertEqual((st, b["vms"]), (200, ["a-vm"]))
            # It may not change or delete a rule that holds a VM it cannot change.
            self.assertEqual(self.d.request("DELETE", f"/api/v1/placement/rules/{theirs['id']}", token=self.deleg)[0], 404)
            self.assertEqual(self.d.request("DELETE", f"/api/v1/placement/rules/{both['id']}", token=self.deleg)[0], 403)
            # A taken name is not confirmed to a caller who cannot see the rule.
            st, b = self.d.request("POST", "/api/v1/placement/rules", {"name": "rule-b-secret", "kind": "affinity", "vms": ["a-vm"]},
                                   token=self.deleg)
            self.assertEqual((st, b["error"]["field"]), (409, "name"), b)
            self.assertNotIn("already exists", b["error"]["message"])
            st, b = self.d.request("POST", "/api/v1/placement/rules", {"name": "rule-a", "kind": "affinity", "vms": ["a-vm"]},
                                   token=self.deleg)
            self.assertEqual(st, 409, b)
            self.assertIn("A placement rule named 'rule-a' already exists", b["error"]["message"])
            # Administrators and the read-only role see every rule.
            self.assertEqual(len(self.d.ok("GET", "/api/v1/placement/rules")["items"]), 3)
            self.assertEqual(len(self.d.ok("GET", "/api/v1/placement/rules", token=self.ro)["items"]), 3)
        finally:
            for r in (mine, theirs, both):
                self.d.request("DELETE", f"/api/v1/placement/rules/{r['id']}")

    def test_read_only_cannot_write_placement_rules(self):
        n = len(self.d.ok("GET", "/api/v1/placement/rules")["items"])
        # Not even a rule without VMs (nothing in it to be denied on).
        st, b = self.d.request("POST", "/api/v1/placement/rules", {"name": "ro-empty", "kind": "affinity", "vms": []}, token=self.ro)
        self.assertEqual(st, 403, b)
        rule = self.d.ok("POST", "/api/v1/placement/rules", {"name": "ro-target", "kind": "affinity", "vms": []})
        try:
            st, b = self.d.request("PATCH", f"/api/v1/placement/rules/{rule['id']}", {"vms": []}, token=self.ro)
            self.assertEqual(st, 403, b)
            st, b = self.d.request("DELETE", f"/api/v1/placement/rules/{rule['id']}", token=self.ro)
            self.assertEqual(st, 403, b)
            self.assertEqual(len(self.d.ok("GET", "/api/v1/placement/rules")["items"]), n + 1)
        finally:
            self.d.request("DELETE", f"/api/v1/placement/rules/{rule['id']}")


class TestInputChecks(HardeningCase):
    def test_empty_query_value_is_a_400_naming_it(self):
        for path, field in [("/api/v1/placement/ratings?memory_mib=", "memory_mib"),
                            ("/api/v1/placement/ratings?cpus=2&group=", "group"),
                            ("/api/v1/jobs?limit=", "limit"),
                            ("/api/v1/events?since_id=", "since_id"),
                            ("/api/v1/vms?host_id=", "host_id"),
                            ("/api/v1/hosts?name=", "name"),
                            ("/api/v1/placement/ratings?memory_mib", "memory_mib")]:
            st, b = self.d.request("GET", path)
            self.assertEqual((st, b["error"]["field"]), (400, field), (path, b))
            self.assertIn(f"'{field}'", b["error"]["message"])
        self.assertEqual(self.d.request("GET", "/api/v1/placement/ratings?memory_mib=512")[0], 200)
        self.assertEqual(self.d.request("GET", "/api/v1/jobs")[0], 200)

    def test_consolidation_refuses_unknown_fields(self):
        good = {"host": {"cpus": 8, "memory_mib": 16384, "reserve": {"memory_mib": 0}},
                "servers": [{"name": "s1", "cpu": 100, "memory_mib": 1024}]}
        self.d.ok("POST", "/api/v1/placement/consolidation", good)
        for bad, field in [(dict(good, extra=1), "extra"),
                           ({"host": {"cpus": 8, "memory": 16384}, "servers": good["servers"]}, "host.memory"),
                           ({"host": {"cpus": 8, "reserve": {"mem": 1}}, "servers": good["servers"]}, "host.reserve.mem"),
                           ({"host": good["host"], "servers": [{"name": "s1", "cpus": 2}]}, "servers[0].cpus")]:
            st, b = self.d.request("POST", "/api/v1/placement/consolidation", bad)
            self.assertEqual((st, b["error"]["field"]), (400, field), b)
            self.assertIn(f"Unknown field '{field}'", b["error"]["message"])


if __name__ == "__main__":
    unittest.main()
