"""What the web console asks of armadad on a large estate (issue 17): the
lists sorted on the server (sort=name|state|host|cpus|memory, '-' for
descending) and paged stably under that order, a host group's subtree
(under_group_id), and GET /summary (counts by state and per group), each
holding only what the caller may see."""
import base64
import unittest
import urllib.parse
import uuid

from armada_harness import Armadad, all_pages, wait_until

# host: (group path, VMs)
HOSTS = {"ca": ("Lab", 6), "cb": ("Lab/Bench", 5), "cc": ("Prod", 4)}


def domains(prefix, n):
    # cpus 1..3 and memory 64..320 MiB out of step with the names: a sort by
    # either differs from the name order, with ties broken by name.
    return "".join(f"<domain type='test'><name>{prefix}-vm{j:02d}</name><uuid>{uuid.uuid4()}</uuid>"
                   f"<memory>{65536 * (1 + (j * 3) % 5)}</memory><vcpu>{1 + (j * 2) % 3}</vcpu>"
                   f"<os><type>hvm</type></os></domain>" for j in range(n))


def expected(items, sort):
    desc = sort.startswith("-")
    col = sort.lstrip("-")
    key = {"name": lambda v: (0,), "state": lambda v: (v["state"],), "host": lambda v: (v.get("host_name") or "",),
           "cpus": lambda v: (v["cpus"],), "memory": lambda v: (v["memory_mib"],)}[col]
    return sorted(items, key=lambda v: (*key(v), v["name"].encode(), v["id"]), reverse=desc)


class ConsoleListCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = Armadad().start()
        try:
            d.token = d.login()
            for path in ("Lab", "Lab/Bench", "Prod"):
                d.ok("POST", "/api/v1/host-groups", {"path": path})
            cls.groups = {g["path"]: g["id"] for g in d.ok("GET", "/api/v1/host-groups")["items"]}
            cls.hosts = {}
            for name, (group, n) in HOSTS.items():
                cls.hosts[name] = d.add_host(name, d.test_node_uri(name, domains=domains(name, n)), group=group)[0]
            want = sum(n for _, n in HOSTS.values())
            wait_until(lambda: d.count("vms") >= want, 30, what="the test domains to be discovered")
            # One VM stopped: two states to count and sort by.
            vm = d.ok("GET", "/api/v1/vms?name=cb-vm01")["items"][0]
            d.wait_job(d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/stop")["job"]["id"])
        except BaseException:
            d.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def vms_of(self, *hosts):
        ids = {self.hosts[h]["id"] for h in hosts}
        return [v for v in self.d.ok("GET", "/api/v1/vms")["items"] if v["host_id"] in ids]


class TestSort(ConsoleListCase):
    SORTS = ("name", "-name", "state", "-state", "host", "-host", "cpus", "-cpus", "memory", "-memory")

    def test_each_sort_matches_a_client_side_sort(self):
        full = self.d.ok("GET", "/api/v1/vms")["items"]
        for sort in self.SORTS:
            with self.subTest(sort=sort):
                got = self.d.ok("GET", f"/api/v1/vms?sort={sort}")["items"]
                self.assertEqual([v["id"] for v in got], [v["id"] for v in expected(full, sort)])
        # The order is not the name order (the test would prove nothing).
        self.assertNotEqual([v["id"] for v in expected(full, "memory")], [v["id"] for v in expected(full, "name")])
        hosts = self.d.ok("GET", "/api/v1/hosts?sort=-name")["items"]
        self.assertEqual([h["name"] for h in hosts], ["cc", "cb", "ca"])

    def test_pages_under_a_sort_cover_every_row_once_in_order(self):
        d = self.d
        full = d.ok("GET", "/api/v1/vms")["items"]
        for sort in ("-memory", "cpus", "state", "-host", "-name"):
            with self.subTest(sort=sort):
                items, n = all_pages(d, f"/api/v1/vms?sort={sort}", limit=4)
                self.assertGreater(n, 3)
                self.assertEqual([v["id"] for v in items], [v["id"] for v in expected(full, sort)])

    def test_a_row_added_behind_the_cursor_is_not_shown_one_ahead_is(self):
        d = self.d
        first = d.ok("GET", "/api/v1/vms?sort=-memory&limit=5")
        made = []
        try:
            # Largest memory: behind the cursor of a descending page; smallest: ahead.
            made.append(d.create_vm("zz-big", "ca", memory_mib=4096))
            made.append(d.create_vm("aa-small", "ca", memory_mib=16))
            rest, _ = all_pages(d, "/api/v1/vms?sort=-memory", limit=5, cursor=first["next_cursor"])
        finally:
            for v in made:
                d.wait_job(d.ok("DELETE", f"/api/v1/vms/{v['id']}")["job"]["id"])
        names = [v["name"] for v in first["items"] + rest]
        self.assertEqual(len(names), len(set(names)))
        self.assertNotIn("zz-big", names)
        self.assertIn("aa-small", names)
        self.assertEqual(names[-1], "aa-small")

    def test_bad_sort_and_foreign_cursor_name_the_field(self):
        d = self.d
        for path, field in (("/api/v1/vms?sort=colour", "sort"), ("/api/v1/hosts?sort=host", "sort"),
                            ("/api/v1/vms?sort=--name", "sort"), ("/api/v1/vms?under_group_id=0", "under_group_id")):
            with self.subTest(path=path):
                st, body = d.request("GET", path)
                self.assertEqual(st, 400)
                self.assertEqual(body["error"]["field"], field)
        cur = d.ok("GET", "/api/v1/vms?sort=cpus&limit=2")["next_cursor"]
        self.assertTrue(cur.startswith("s1."))
        name_cur = d.ok("GET", "/api/v1/vms?limit=2")["next_cursor"]
        forged = "s1." + base64.urlsafe_b64encode(b"cpus\nnot-a-number\nca-vm00\n1").decode().rstrip("=")
        for path in (f"/api/v1/vms?sort=memory&limit=2&cursor={cur}",       # another sort's
                     f"/api/v1/vms?limit=2&cursor={cur}",                   # a sorted one without sort
                     f"/api/v1/vms?sort=cpus&limit=2&cursor={name_cur}",    # a name cursor under a sort
                     f"/api/v1/vms?sort=cpus&limit=2&cursor={forged}"):
            with self.subTest(path=path):
                st, body = d.request("GET", path)
                self.assertEqual(st, 400)
                self.assertEqual(body["error"]["field"], "cursor")

    def test_sort_and_filters_together(self):
        d = self.d
        lab = self.groups["Lab"]
        body = d.ok("GET", f"/api/v1/vms?sort=-cpus&under_group_id={lab}&state=running&name_prefix=c&limit=3")
        want = expected([v for v in self.vms_of("ca", "cb") if v["state"] == "running"], "-cpus")
        got, _ = all_pages(d, f"/api/v1/vms?sort=-cpus&under_group_id={lab}&state=running&name_prefix=c", limit=3)
        self.assertEqual([v["id"] for v in got], [v["id"] for v in want])
        self.assertEqual([v["id"] for v in body["items"]], [v["id"] for v in want[:3]])


class TestSubtree(ConsoleListCase):
    def test_under_group_id_holds_the_subtree(self):
        d, g = self.d, self.groups
        for group, hosts in (("Lab", ("ca", "cb")), ("Lab/Bench", ("cb",)), ("Prod", ("cc",))):
            with self.subTest(group=group):
                vms = d.ok("GET", f"/api/v1/vms?under_group_id={g[group]}")["items"]
                self.assertEqual([v["id"] for v in vms], [v["id"] for v in expected(self.vms_of(*hosts), "name")])
                hs = d.ok("GET", f"/api/v1/hosts?under_group_id={g[group]}")["items"]
                self.assertEqual(sorted(h["name"] for h in hs), list(hosts))
        # Paged by name within a subtree (the name walk that stops early).
        for sort in ("name", "-name"):
            got, n = all_pages(d, f"/api/v1/vms?under_group_id={g['Lab']}&sort={sort}", limit=4)
            self.assertGreater(n, 2)
            self.assertEqual([v["id"] for v in got], [v["id"] for v in expected(self.vms_of("ca", "cb"), sort)])
        # The root stands for everything.
        root = [x for x in d.ok("GET", "/api/v1/host-groups")["items"] if not x.get("parent_id")][0]["id"]
        self.assertEqual(len(d.ok("GET", f"/api/v1/vms?under_group_id={root}")["items"]), d.count("vms"))
        self.assertEqual(d.ok("GET", "/api/v1/vms?under_group_id=99999&limit=5"), {"items": [], "next_cursor": None})


class TestSummary(ConsoleListCase):
    def test_counts_match_the_lists(self):
        d, g = self.d, self.groups
        s = d.ok("GET", "/api/v1/summary")
        vms = d.ok("GET", "/api/v1/vms")["items"]
        states = {}
        for v in vms:
            states[v["state"]] = states.get(v["state"], 0) + 1
        self.assertEqual(s["vms"], {"total": len(vms), "by_state": states})
        self.assertEqual(s["vms"]["by_state"].get("stopped"), 1)
        self.assertEqual(s["hosts"]["total"], 3)
        self.assertEqual(s["groups"][str(g["Lab"])], {"hosts": 2, "vms": 11})
        self.assertEqual(s["groups"][str(g["Lab/Bench"])], {"hosts": 1, "vms": 5})
        self.assertEqual(s["groups"][str(g["Prod"])], {"hosts": 1, "vms": 4})
        lab = d.ok("GET", f"/api/v1/summary?group_id={g['Lab/Bench']}")
        self.assertEqual(lab["group_id"], g["Lab/Bench"])
        self.assertEqual(lab["vms"], {"total": 5, "by_state": {"running": 4, "stopped": 1}})
        self.assertEqual(lab["hosts"]["total"], 1)
        st, body = d.request("GET", "/api/v1/summary?group_id=99999")
        self.assertEqual((st, body["error"]["field"]), (404, "group_id"))
        st, body = d.request("GET", "/api/v1/summary?group_id=x")
        self.assertEqual((st, body["error"]["field"]), (400, "group_id"))

    def test_counts_follow_a_change(self):
        d = self.d
        before = d.ok("GET", "/api/v1/summary")["vms"]["total"]
        vm = d.create_vm("sum-new", "cc")
        try:
            self.assertEqual(d.ok("GET", "/api/v1/summary")["vms"]["total"], before + 1)
            self.assertEqual(d.ok("GET", "/api/v1/summary")["groups"][str(self.groups["Prod"])]["vms"], 5)
        finally:
            d.wait_job(d.ok("DELETE", f"/api/v1/vms/{vm['id']}")["job"]["id"])
        self.assertEqual(d.ok("GET", "/api/v1/summary")["vms"]["total"], before)


class TestScope(ConsoleListCase):
    def test_delegated_admin_counts_and_sorted_pages_hold_only_its_scope(self):
        d, g = self.d, self.groups
        d.ok("POST", "/api/v1/users", {"name": "cl-deleg", "password": "deleg-pass-1", "role": "delegated-administrator",
                                       "scopes": ["Lab"]})
        tok = d.login("cl-deleg", "deleg-pass-1")
        s = d.ok("GET", "/api/v1/summary", token=tok)
        self.assertEqual(s["vms"]["total"], 11)
        self.assertEqual(s["hosts"]["total"], 2)
        self.assertEqual(set(s["groups"]), {str(g["Lab"]), str(g["Lab/Bench"])})
        # A group outside its scope is not found, as one that does not exist.
        st, body = d.request("GET", f"/api/v1/summary?group_id={g['Prod']}", token=tok)
        self.assertEqual((st, body["error"]["message"]), (404, f"Host group {g['Prod']} does not exist."))
        items, _ = all_pages(d, "/api/v1/vms?sort=-memory", limit=4, token=tok)
        self.assertEqual([v["id"] for v in items], [v["id"] for v in expected(self.vms_of("ca", "cb"), "-memory")])
        self.assertEqual(d.ok("GET", f"/api/v1/vms?under_group_id={g['Prod']}&sort=cpus", token=tok)["items"], [])

    def test_self_service_counts_only_its_own(self):
        d = self.d
        d.ok("POST", "/api/v1/users", {"name": "cl-self", "password": "self-pass-12", "role": "self-service"})
        tok = d.login("cl-self", "self-pass-12")
        s = d.ok("GET", "/api/v1/summary", token=tok)
        self.assertEqual((s["vms"]["total"], s["hosts"]["total"], s["groups"]), (0, 0, {}))
        self.assertEqual(d.ok("GET", "/api/v1/vms?sort=-cpus&limit=5", token=tok), {"items": [], "next_cursor": None})


if __name__ == "__main__":
    unittest.main()
