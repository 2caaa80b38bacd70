"""Issue 17's last two items: a VM's owner set by an administrator
(PATCH /vms/{id} {"owner": NAME | null, "description": TEXT}) and the owner
filter of the lists (owner_id, owner=NAME); and paging back through any
length of job and event history (GET /jobs, /events: before_id,
next_before_id, Link rel="next")."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse
import uuid

from armada_harness import ARMADA, Armadad, raw_get, wait_until

# host: (group path, VMs)
HOSTS = {"oa": ("Lab", 3), "ob": ("Prod", 2)}
PASSWORDS = {"ow-alice": "alice-pass-12", "ow-bob": "bob-pass-1234", "ow-deleg": "deleg-pass-12", "ow-ro": "ro-pass-12345"}


def domains(prefix, n):
    return "".join(f"<domain type='test'><name>{prefix}-vm{j}</name><uuid>{uuid.uuid4()}</uuid><memory>65536</memory>"
                   f"<vcpu>1</vcpu><os><type>hvm</type></os></domain>" for j in range(n))


def history(d, path, limit, token=None, before=None, max_pages=1000):
    """Every item of path paged back by before_id (from before; None: the
    newest): (items, pages)."""
    items, pages = [], 0
    sep = "&" if "?" in path else "?"
    while pages < max_pages:
        body = d.ok("GET", f"{path}{sep}limit={limit}" + (f"&before_id={before}" if before else ""), token=token)
        assert len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        before = body["next_before_id"]
        if before is None:
            return items, pages
    raise AssertionError(f"{path}: the pages do not end")


class OwnerCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = Armadad().start()
        try:
            d.token = d.login()
            for path in ("Lab", "Prod"):
                d.ok("POST", "/api/v1/host-groups", {"path": path})
            cls.hosts = {}
            for name, (group, n) in HOSTS.items():
                cls.hosts[name] = d.add_host(name, d.test_node_uri(name, domains=domains(name, n)), group=group)[0]
            want = sum(n for _, n in HOSTS.values())
            wait_until(lambda: d.count("vms") >= want, 30, what="the test domains to be discovered")
            cls.users = {}
            for name, role, scopes in (("ow-alice", "self-service", None), ("ow-bob", "self-service", None),
                                       ("ow-deleg", "delegated-administrator", ["Lab"]), ("ow-ro", "read-only", None)):
                body = {"name": name, "password": PASSWORDS[name], "role": role}
                if scopes:
                    body["scopes"] = scopes
                cls.users[name] = d.ok("POST", "/api/v1/users", body)["id"]
            cls.tokens = {n: d.login(n, p) for n, p in PASSWORDS.items()}
        except BaseException:
            d.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def vm(self, name):
        return self.d.ok("GET", f"/api/v1/vms?name={name}")["items"][0]

    def patch(self, name, body, token=None):
        return self.d.request("PATCH", f"/api/v1/vms/{self.vm(name)['id']}", body, token=token)

    def audit(self, action):
        return [a for a in self.d.ok("GET", "/api/v1/audit?limit=1000")["items"] if a["action"] == action]


class TestVmOwner(OwnerCase):
    def tearDown(self):
        for v in self.d.ok("GET", "/api/v1/vms")["items"]:
            if v["owner_id"] or v.get("description"):
                self.d.ok("PATCH", f"/api/v1/vms/{v['id']}", {"owner": None, "description": ""})

    def test_admin_gives_and_takes_a_vm_and_the_lists_follow_at_once(self):
        d, alice = self.d, self.users["ow-alice"]
        vm = self.vm("oa-vm0")
        self.assertIsNone(vm["owner_id"])
        self.assertEqual(d.ok("GET", "/api/v1/vms?owner=ow-alice")["items"], [])
        got = d.ok("PATCH", f"/api/v1/vms/{vm['id']}", {"owner": "ow-alice"})
        self.assertEqual((got["owner_id"], got["owner_name"]), (alice, "ow-alice"))
        # The read model took it through the rows hook: no wait.
        self.assertEqual(self.vm("oa-vm0")["owner_name"], "ow-alice")
        self.assertEqual([v["name"] for v in d.ok("GET", f"/api/v1/vms?owner_id={alice}")["items"]], ["oa-vm0"])
        self.assertEqual([v["name"] for v in d.ok("GET", "/api/v1/vms?owner=ow-alice&limit=5")["items"]], ["oa-vm0"])
        self.assertEqual([v["name"] for v in d.ok("GET", "/api/v1/vms?owner=ow-alice&sort=-name")["items"]], ["oa-vm0"])
        self.assertEqual(d.ok("GET", "/api/v1/vms?owner=nobody-here")["items"], [])
        # Its new owner sees it and operates it; the audit and an event say so.
        self.assertEqual([v["name"] for v in d.ok("GET", "/api/v1/vms", token=self.tokens["ow-alice"])["items"]], ["oa-vm0"])
        a = self.audit("vm.update")[0]
        self.assertEqual((a["object_name"], a["detail"], a["result"]), ("oa-vm0", "owner 'ow-alice'", "ok"))
        ev = [e for e in d.ok("GET", "/api/v1/events?limit=50")["items"] if e["kind"] == "vm.updated"][0]
        self.assertEqual(ev["message"], "VM 'oa-vm0' now belongs to user 'ow-alice'.")
        # Taken back: nobody's.
        got = d.ok("PATCH", f"/api/v1/vms/{vm['id']}", {"owner": None})
        self.assertIsNone(got["owner_id"])
        self.assertIsNone(self.vm("oa-vm0")["owner_name"])
        self.assertEqual(d.ok("GET", "/api/v1/vms?owner=ow-alice")["items"], [])
        self.assertEqual(d.ok("GET", "/api/v1/vms", token=self.tokens["ow-alice"])["items"], [])
        self.assertEqual(self.audit("vm.update")[0]["detail"], "no owner")
        # The previous owner hears of it (its console drops the VM), and only it.
        ev = d.ok("GET", "/api/v1/events?limit=5", token=self.tokens["ow-alice"])["items"][0]
        self.assertEqual(ev["message"], "VM 'oa-vm0' no longer belongs to user 'ow-alice'.")
        self.assertFalse([e for e in d.ok("GET", "/api/v1/events?limit=50", token=self.tokens["ow-bob"])["items"]
                          if e["object_name"] == "oa-vm0"])
        # Given from one user to another: both hear of it.
        d.ok("PATCH", f"/api/v1/vms/{vm['id']}", {"owner": "ow-alice"})
        d.ok("PATCH", f"/api/v1/vms/{vm['id']}", {"owner": "ow-bob"})
        self.assertEqual(d.ok("GET", "/api/v1/events?limit=1", token=self.tokens["ow-bob"])["items"][0]["message"],
                         "VM 'oa-vm0' now belongs to user 'ow-bob'.")
        self.assertEqual(d.ok("GET", "/api/v1/events?limit=1", token=self.tokens["ow-alice"])["items"][0]["message"],
                         "VM 'oa-vm0' no longer belongs to user 'ow-alice'.")
        # The same owner again: audited, no event.
        n = len(d.ok("GET", "/api/v1/events?limit=1000")["items"])
        d.ok("PATCH", f"/api/v1/vms/{vm['id']}", {"owner": "ow-bob"})
        self.assertEqual(len(d.ok("GET", "/api/v1/events?limit=1000")["items"]), n)

    def test_description_alone_and_cleared(self):
        d = self.d
        st, got = self.patch("ob-vm1", {"description": "web tier"})
        self.assertEqual((st, got["description"], got["owner_id"]), (200, "web tier", None))
        self.assertEqual(self.vm("ob-vm1")["description"], "web tier")
        st, got = self.patch("ob-vm1", {"description": ""})
        self.assertEqual((st, got["description"]), (200, None))
        self.assertEqual(self.audit("vm.update")[0]["detail"], "description")
        # No event for a description: nobody's rights changed.
        self.assertFalse([e for e in d.ok("GET", "/api/v1/events?limit=50")["items"]
                          if e["kind"] == "vm.updated" and e["object_name"] == "ob-vm1"])

    def test_bad_input_names_the_field_and_changes_nothing(self):
        d = self.d
        vm = self.vm("oa-vm1")
        self.patch("oa-vm1", {"owner": "ow-bob", "description": "before"})
        for body, field in (({"owner": "no-such-user", "description": "after"}, "owner"),
                            ({"owner": 7, "description": "after"}, "owner"),
                            ({"owner": "ow-alice", "description": 5}, "description"),
                            ({"owner": "ow-alice", "description": "x" * 1001}, "description"),
                            ({"owner": "ow-alice", "colour": "red"}, "colour"),
                            ({}, None)):
            with self.subTest(body=str(body)[:60]):
                st, b = self.patch("oa-vm1", body)
                self.assertEqual(st, 400)
                self.assertEqual(b["error"]["field"], field)
                now = self.vm("oa-vm1")
                self.assertEqual((now["owner_name"], now["description"]), ("ow-bob", "before"))
        st, b = self.patch("oa-vm1", {"owner": "no-such-user"})
        self.assertEqual(b["error"]["message"], "There is no user named 'no-such-user'.")
        st, b = d.request("PATCH", "/api/v1/vms/999999", {"owner": None})
        self.assertEqual(st, 404)
        self.assertEqual(vm["id"], self.vm("oa-vm1")["id"])

    def test_roles(self):
        d, t = self.d, self.tokens
        # A delegated administrator changes the VMs in its scope, and no others (404: it cannot see them).
        st, got = self.patch("oa-vm2", {"owner": "ow-alice"}, token=t["ow-deleg"])
        self.assertEqual((st, got.get("owner_name")), (200, "ow-alice"))
        st, b = self.patch("ob-vm0", {"owner": "ow-alice"}, token=t["ow-deleg"])
        self.assertEqual(st, 404)
        self.assertIsNone(self.vm("ob-vm0")["owner_id"])
        # Its owner (self-service) may not give it away, nor may a read-only user: 403, audited.
        denied = lambda: [a for a in self.audit("change") if a["result"] == "denied" and a["object_name"] == "oa-vm2"]
        before = len(denied())
        for who in ("ow-alice", "ow-ro"):
            with self.subTest(who=who):
                st, b = self.patch("oa-vm2", {"owner": "ow-bob"}, token=t[who])
                self.assertEqual((st, b["error"]["code"]), (403, "forbidden"))
                # The rights come before the user's name: nothing is told of who exists.
                st, b = self.patch("oa-vm2", {"owner": "no-such-user"}, token=t[who])
                self.assertEqual(st, 403)
        self.assertEqual(self.vm("oa-vm2")["owner_name"], "ow-alice")
        self.assertEqual(len(denied()), before + 4)
        self.assertEqual(b["error"]["message"], "User 'ow-ro' (read-only) may not change VM 'oa-vm2'.")
        # A self-service user filters by its own name only.
        self.assertEqual([v["name"] for v in d.ok("GET", "/api/v1/vms?owner=ow-alice", token=t["ow-alice"])["items"]], ["oa-vm2"])
        self.assertEqual(d.ok("GET", "/api/v1/vms?owner=ow-bob", token=t["ow-bob"])["items"], [])
        self.assertEqual(d.ok("GET", "/api/v1/vms?owner=ow-alice", token=t["ow-bob"])["items"], [])
        st, b = d.request("GET", "/api/v1/vms?owner=" + "x" * 65)
        self.assertEqual((st, b["error"]["field"]), (400, "owner"))


class TestHistoryPaging(OwnerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        d = cls.d
        try:
            # Jobs on both hosts (refreshes), and events (owner changes).
            for i in range(9):
                for h in cls.hosts.values():
                    d.wait_job(d.ok("POST", f"/api/v1/hosts/{h['id']}/actions/refresh")["job"]["id"])
            vm = d.ok("GET", "/api/v1/vms?name=oa-vm0")["items"][0]
            for i in range(12):
                d.ok("PATCH", f"/api/v1/vms/{vm['id']}", {"owner": "ow-alice" if i % 2 == 0 else None})
        except BaseException:
            d.cleanup()
            raise

    def check_pages(self, path, limit, token=None):
        full = self.d.ok("GET", f"{path}{'&' if '?' in path else '?'}limit=1000", token=token)
        self.assertIsNone(full["next_before_id"])
        items, pages = history(self.d, path, limit, token=token)
        ids = [x["id"] for x in items]
        self.assertEqual(ids, [x["id"] for x in full["items"]])      # none missed, none twice, newest first
        self.assertEqual(ids, sorted(ids, reverse=True))
        self.assertEqual(len(ids), len(set(ids)))
        return ids, pages

    def test_jobs_and_events_page_back_through_everything(self):
        for path in ("/api/v1/jobs", "/api/v1/events", "/api/v1/jobs?state=succeeded"):
            with self.subTest(path=path):
                ids, pages = self.check_pages(path, 4)
                self.assertGreater(pages, 3)
                self.assertGreater(len(ids), 12)

    def test_link_header_names_the_next_page(self):
        d = self.d
        st, hdrs, body = raw_get(d, "/api/v1/jobs?limit=3&state=succeeded", d.token)
        self.assertEqual(st, 200)
        first = __import__("json").loads(body)
        nb = first["next_before_id"]
        self.assertEqual(nb, first["items"][-1]["id"])
        self.assertEqual(hdrs["link"], f"</api/v1/jobs?limit=3&before_id={nb}&state=succeeded>; rel=\"next\"")
        nxt = d.ok("GET", f"/api/v1/jobs?limit=3&before_id={nb}&state=succeeded")
        self.assertTrue(all(j["id"] < nb for j in nxt["items"]))
        last = d.ok("GET", f"/api/v1/events?limit=1000")
        st, hdrs, _ = raw_get(d, "/api/v1/events?limit=1000", d.token)
        self.assertNotIn("link", hdrs)
        self.assertIsNone(last["next_before_id"])

    def test_rows_added_while_paging_are_not_shown_twice_nor_shift_a_page(self):
        d = self.d
        first = d.ok("GET", "/api/v1/events?limit=5")
        vm = self.vm("oa-vm1")
        for i in range(6):  # newer events: never in an older page
            d.ok("PATCH", f"/api/v1/vms/{vm['id']}", {"owner": "ow-bob" if i % 2 == 0 else None})
        rest, _ = history(d, "/api/v1/events", 5, before=first["next_before_id"])
        ids = [e["id"] for e in first["items"] + rest]
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(ids, sorted(ids, reverse=True))
        full = [e["id"] for e in d.ok("GET", "/api/v1/events?limit=1000")["items"]]
        self.assertEqual(ids, [i for i in full if i <= first["items"][0]["id"]])

    def test_a_delegated_administrators_pages_hold_only_its_scope(self):
        tok = self.tokens["ow-deleg"]
        ids, pages = self.check_pages("/api/v1/jobs", 2, token=tok)
        self.assertGreater(pages, 3)
        everyone = self.d.ok("GET", "/api/v1/jobs?limit=1000")["items"]
        mine = [j["id"] for j in everyone if j["target_kind"] == "host" and j["target_id"] == self.hosts["oa"]["id"]]
        self.assertTrue(set(mine) <= set(ids))
        self.assertFalse({j["id"] for j in everyone if j["target_kind"] == "host" and j["target_id"] == self.hosts["ob"]["id"]} & set(ids))
        self.check_pages("/api/v1/events", 3, token=tok)
        # A self-service user: its own events only (alice owned oa-vm0 on and off).
        ids, _ = self.check_pages("/api/v1/events", 2, token=self.tokens["ow-alice"])
        self.assertTrue(ids)

    def test_bad_before_id_is_a_400_naming_it(self):
        for path in ("/api/v1/jobs", "/api/v1/events"):
            for v in ("0", "-3", "x", "", "1.5"):
                with self.subTest(path=path, v=v):
                    st, b = self.d.request("GET", f"{path}?before_id={urllib.parse.quote(v)}")
                    self.assertEqual((st, b["error"]["field"]), (400, "before_id"))
        # Older than everything: an empty last page.
        self.assertEqual(self.d.ok("GET", "/api/v1/jobs?before_id=1"), {"items": [], "next_before_id": None})


class TestCli(OwnerCase):
    """armada vm set NAME --owner USER | --no-owner, vm list --owner, and
    job/event list --before."""
    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="armada-cli-owner-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.addCleanup(lambda: self.d.ok("PATCH", f"/api/v1/vms/{self.vm('ob-vm0')['id']}", {"owner": None, "description": ""}))

    def run_cli(self, *args):
        env = dict(os.environ, HOME=self.home, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, ASAN_OPTIONS="detect_leaks=0")
        return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=env, timeout=120)

    def cli(self, *args):
        r = self.run_cli(*args)
        self.assertEqual(r.returncode, 0, f"armada {' '.join(args)}: {r.stderr}")
        return r

    def test_vm_set_owner_and_list_by_owner(self):
        self.assertEqual(self.cli("vm", "set", "ob-vm0", "--owner", "ow-bob").stdout, "VM 'ob-vm0': owned by 'ow-bob'\n")
        self.assertEqual(self.vm("ob-vm0")["owner_name"], "ow-bob")
        out = self.cli("vm", "list", "--owner", "ow-bob").stdout
        self.assertRegex(out, r"ob-vm0\s+running\s+ob\b.*ow-bob")
        self.assertNotIn("oa-vm0", out)
        self.cli("vm", "set", "ob-vm0", "--no-owner", "--description", "db")
        self.assertEqual((self.vm("ob-vm0")["owner_name"], self.vm("ob-vm0")["description"]), (None, "db"))
        r = self.run_cli("vm", "set", "ob-vm0", "--owner", "nobody-at-all")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("There is no user named 'nobody-at-all'.", r.stderr)
        for args in (("vm", "set", "ob-vm0"), ("vm", "set", "ob-vm0", "--owner", "ow-bob", "--no-owner")):
            with self.subTest(args=args):
                self.assertNotEqual(self.run_cli(*args).returncode, 0)

    def test_job_and_event_list_before(self):
        d = self.d
        for _ in range(3):
            d.wait_job(d.ok("POST", f"/api/v1/hosts/{self.hosts['oa']['id']}/actions/refresh")["job"]["id"])
        first = json.loads(self.cli("job", "list", "--limit", "2", "--output", "json").stdout)
        nb = first["next_before_id"]
        r = self.cli("job", "list", "--limit", "2")
        self.assertIn(f"(older jobs: armada job list --before {nb})", r.stderr)
        older = json.loads(self.cli("job", "list", "--limit", "2", "--before", str(nb), "--output", "json").stdout)
        self.assertTrue(older["items"])
        self.assertTrue(all(j["id"] < nb for j in older["items"]))
        ev = json.loads(self.cli("event", "list", "--limit", "1", "--output", "json").stdout)
        if ev["next_before_id"]:
            self.assertTrue(all(e["id"] < ev["next_before_id"] for e in
                                json.loads(self.cli("event", "list", "--before", str(ev["next_before_id"]), "--output", "json").stdout)["items"]))
        r = self.run_cli("job", "list", "--before", "x")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--before must be a job id", r.stderr)


if __name__ == "__main__":
    unittest.main()
