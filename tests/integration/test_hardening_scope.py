"""Scope hardening (issue 10): the read-only role changes nothing through any
write endpoint of docs/openapi.yaml; self-service and delegated users are
refused without learning names of objects outside their scope; and the
session says which features the server offers to this user."""
import json
import os
import re
import shutil
import struct
import tempfile
import unittest

try:
    import yaml
except ImportError:  # scripts/bootstrap installs python3-yaml
    yaml = None

import dbdirect
from armada_harness import ROOT, Armadad, wait_until


def qcow2(path, virtual_size):
    """A minimal qcow2 header: enough for Armada's image detection."""
    hdr = b"QFI\xfb" + struct.pack(">IQIIQ", 3, 0, 0, 16, virtual_size)
    with open(path, "wb") as f:
        f.write(hdr.ljust(4096, b"\0"))


def write_operations():
    """Every (METHOD, path) of docs/openapi.yaml that is not a GET."""
    with open(os.path.join(ROOT, "docs", "openapi.yaml")) as f:
        spec = yaml.safe_load(f)
    ops = set()
    for path, item in spec["paths"].items():
        for method in item:
            if method in ("post", "put", "patch", "delete"):
                ops.add((method.upper(), path))
    return ops


# Tables that change by themselves while armadad runs (samples, the audit
# trail of the refusals themselves, sessions, deliveries), and columns that
# refreshes and monitoring rewrite. Everything else must stay as it was.
VOLATILE_TABLES = {"audit", "token", "event", "perf_raw", "perf_5m", "perf_1h", "perf_latest", "monitor_stat", "host_usage",
                   "host_pool", "pool_stat", "webhook_delivery", "assess_sample", "job_step", "ha_pending", "vm_xml", "sqlite_sequence"}
VOLATILE_COLUMN = re.compile(r"(_at$|^last_|^state$|^state_reason$|^free_memory_mib$|^value$|^progress$|^step$|^message$)")


class PopulatedCase(unittest.TestCase):
    """An armadad (started with ARGS) and a scratch directory, filled by the
    subclass's _populate()."""
    ARGS = []

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="armada-scope-it-")
        cls.d = d = Armadad(cls.ARGS)
        try:
            d.start()
            d.token = d.login()
            cls._populate()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)


class ReadOnlyWritesNothing(PopulatedCase):
    """Walks every write endpoint as a read-only user: each answers 403 (the
    policy, not a 400 about the body: every body is one an administrator
    could send), and the database is the same afterwards."""

    # Datastores may live under the temporary directory (the walk's own is inside it).
    ARGS = ["--monitor-interval-ms", "300", "--backup-root", tempfile.gettempdir()]

    @classmethod
    def _populate(cls):
        d, tmp = cls.d, cls.tmp
        ids = cls.ids = {}
        d.ok("POST", "/api/v1/host-groups", {"path": "Lab/Inner"})
        d.ok("POST", "/api/v1/host-groups", {"path": "Empty"})
        ids["group"] = d.find("host-groups", "Lab/Inner")["id"]
        ids["empty_group"] = d.find("host-groups", "Empty")["id"]
        for name in ("t1", "t2"):
            xml = os.path.join(tmp, name + ".xml")
            with open(xml, "w") as f:
                f.write("<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>"
                        "<threads>1</threads><active>8</active></cpu><memory>16777216</memory></node>\n")
            host, job = d.add_host(name, "test://" + xml, group="Lab/Inner")
            assert job["state"] == "succeeded", job
            ids[name] = host["id"]
        vm = d.create_vm("vm1", "t1")
        ids["vm"] = vm["id"]
        ids["job"] = d.ok("GET", "/api/v1/jobs?limit=1")["items"][0]["id"]
        for name, role in (("ro", "read-only"), ("other", "self-service")):
            d.ok("POST", "/api/v1/users", {"name": name, "password": f"{name}-password-1", "role": role})
        ids["ro_user"] = d.find("users", "ro")["id"]
        ids["other_user"] = d.find("users", "other")["id"]
        cls.ro = d.login("ro", "ro-password-1")
        ids["rule"] = d.ok("POST", "/api/v1/placement/rules", {"name": "r1", "kind": "anti-affinity", "vms": ["vm1"]})["id"]
        ids["empty_rule"] = d.ok("POST", "/api/v1/placement/rules", {"name": "r-empty", "kind": "affinity", "vms": []})["id"]
        os.makedirs(os.path.join(tmp, "shared1"))
        ids["cluster"] = d.ok("POST", "/api/v1/clusters", {"name": "c1", "hosts": ["t2"], "shared_storage": os.path.join(tmp, "shared1"),
                                                            "tolerate": 0})["id"]
        cls.share = os.path.join(tmp, "share")
        os.makedirs(os.path.join(cls.share, "linux"))
        qcow2(os.path.join(cls.share, "linux", "base.qcow2"), 64 << 20)
        r = d.ok("POST", "/api/v1/library/shares", {"path": cls.share})
        ids["share"] = r["share"]["id"]
        assert d.wait_job(r["job"]["id"])["state"] == "succeeded"
        qcow2(os.path.join(cls.share, "linux", "later.qcow2"), 64 << 20)
        os.makedirs(os.path.join(tmp, "share2"))
        ids["template"] = d.ok("POST", "/api/v1/templates", {"name": "tpl", "image": "linux/base.qcow2", "cpus": 1,
                                                             "memory_mib": 64})["id"]
        ids["grant"] = d.ok("POST", "/api/v1/grants", {"user": "other", "templates": ["tpl"], "group": "Lab"})["id"]
        rule = d.ok("POST", "/api/v1/alert-rules", {"name": "vm-stopped", "object_kind": "vm", "metric": "state", "comparison": "==",
                                                    "state": "stopped", "severity": "info", "scope": "object", "scope_id": ids["vm"]})
        ids["alert_rule"] = rule["id"]
        r = d.ok("POST", "/api/v1/networks", {"name": "net1", "host": "t1", "mode": "isolated"})
        assert d.wait_job(r["job"]["id"])["state"] == "succeeded"
        ids["network"] = r["network"]["id"]
        alerts = wait_until(lambda: [a for a in d.ok("GET", "/api/v1/alerts?state=open")["items"] if a["rule_name"] == "vm-stopped"],
                            20, what="the vm-stopped alert to open")
        ids["alert"] = alerts[0]["id"]
        ids["webhook"] = d.ok("POST", "/api/v1/webhooks", {"url": "http://127.0.0.1:9/armada-test"})["id"]
        ids["backup_policy"] = d.ok("POST", "/api/v1/backup-policies", {"vm": "vm1", "every": "1h"})["id"]
        ids["assessment"] = d.ok("POST", "/api/v1/assessments", {"name": "srv1", "node_exporter": "http://127.0.0.1:9/metrics"})["id"]
        r = d.ok("POST", "/api/v1/datastores", {"name": "ds1", "path": os.path.join(tmp, "ds1")})
        ids["datastore"] = r["datastore"]["id"]
        assert d.wait_job(r["job"]["id"])["state"] == "succeeded"

    def cases(self):
        """(METHOD, openapi path) -> [(concrete path, body)]: each a request
        an administrator could make successfully (or at least get past
        every body check with)."""
        i, tmp = self.ids, self.tmp
        vm, host = i["vm"], i["t1"]
        return {
            ("POST", "/users"): [("/users", {"name": "made-by-ro", "password": "long-enough-1", "role": "administrator"})],
            ("PATCH", "/users/{id}"): [(f"/users/{i['other_user']}", {"password": "new-password-1"}),
                                       (f"/users/{i['ro_user']}", {"role": "administrator"})],
            ("DELETE", "/users/{id}"): [(f"/users/{i['other_user']}", None)],
            ("POST", "/host-groups"): [("/host-groups", {"path": "Lab/ByRo"}), ("/host-groups", {"path": "Lab/Inner"}),
                                       ("/host-groups", {"name": "ByRo", "parent_id": i["group"]})],
            ("PATCH", "/host-groups/{id}"): [(f"/host-groups/{i['group']}", {"name": "Renamed"}),
                                             (f"/host-groups/{i['empty_group']}", {"parent_id": i["group"]})],
            ("DELETE", "/host-groups/{id}"): [(f"/host-groups/{i['empty_group']}", None)],
            ("POST", "/hosts"): [("/hosts", {"name": "ro-host", "uri": "qemu+tcp://192.0.2.1/system", "group": "Lab"})],
            ("DELETE", "/hosts/{id}"): [(f"/hosts/{i['t2']}", None)],
            ("PATCH", "/hosts/{id}"): [(f"/hosts/{host}", {"max_parallel_starts": 2})],
            ("POST", "/hosts/{id}/actions/refresh"): [(f"/hosts/{host}/actions/refresh", {})],
            ("POST", "/vms"): [("/vms", {"name": "ro-vm", "host": "t1", "memory_mib": 64}), ("/vms", {"name": "ro-vm2", "memory_mib": 64}),
                               ("/vms", {"name": "vm1", "host": "t1", "memory_mib": 64})],
            ("PATCH", "/vms/{id}"): [(f"/vms/{vm}", {"owner": "other"}), (f"/vms/{vm}", {"owner": None, "description": "ro"})],
            ("DELETE", "/vms/{id}"): [(f"/vms/{vm}", None)],
            # issue 12: clone, export and import
            ("POST", "/vms/{id}/clone"): [(f"/vms/{vm}/clone", {"name": "ro-clone"}),
                                          (f"/vms/{vm}/clone", {"name": "ro-linked", "linked": True})],
            ("POST", "/vms/{id}/export"): [(f"/vms/{vm}/export", {"to": tmp, "format": "ova"}),
                                           (f"/vms/{vm}/export", {"to": tmp, "format": "qcow2"})],
            ("POST", "/vms/import"): [("/vms/import", {"path": os.path.join(self.share, "linux", "base.qcow2"), "name": "ro-imp"})],
            # issue 12: P2V (refused before anything is asked of the server)
            ("POST", "/p2v"): [("/p2v", {"server": "ro-p2v", "ssh": "root@192.0.2.1", "disks": ["/dev/sda"],
                                         "host_key_fingerprint": "SHA256:" + "A" * 43})],
            ("POST", "/vms/{id}/actions/{action}"): [(f"/vms/{vm}/actions/{a}", {"timeout_s": 5} if a == "stop" else {})
                                                     for a in ("start", "stop", "kill", "pause", "resume")],
            ("POST", "/jobs/{id}/actions/cancel"): [(f"/jobs/{i['job']}/actions/cancel", {})],
            ("PUT", "/host-groups/{id}/placement-policy"): [(f"/host-groups/{i['group']}/placement-policy", {"cpu_pct": 10})],
            ("PATCH", "/host-groups/{id}/placement-policy"): [(f"/host-groups/{i['group']}/placement-policy", {"goal": "load-balancing"})],
            ("POST", "/placement/rules"): [("/placement/rules", {"name": "ro-rule", "kind": "affinity", "vms": []}),
                                           ("/placement/rules", {"name": "ro-rule2", "kind": "anti-affinity", "vms": ["vm1"]})],
            ("PATCH", "/placement/rules/{id}"): [(f"/placement/rules/{i['empty_rule']}", {"vms": []}),
                                                (f"/placement/rules/{i['rule']}", {"vms": []})],
            ("DELETE", "/placement/rules/{id}"): [(f"/placement/rules/{i['empty_rule']}", None), (f"/placement/rules/{i['rule']}", None)],
            ("POST", "/vms/{id}/migrate"): [(f"/vms/{vm}/migrate", {"to": "t2"})],
            ("POST", "/vms/{id}/backups"): [(f"/vms/{vm}/backups", {})],
            ("POST", "/datastores"): [("/datastores", {"name": "ro-ds", "path": os.path.join(tmp, "ro-ds")})],
            ("DELETE", "/datastores/{id}"): [("/datastores/1", None)],
            ("POST", "/datastores/verify-path"): [("/datastores/verify-path", {"path": os.path.join(tmp, "ro-ds")})],
            ("POST", "/datastores/{id}/actions/{action}"): [(f"/datastores/1/actions/{a}", {}) for a in ("verify", "gc")],
            ("POST", "/backups/restore"): [("/backups/restore", {"vm": "vm1", "point": "latest", "as": "ro-restored"})],
            # issue 12: VM hardware and ISOs
            ("PATCH", "/vms/{id}/hardware"): [(f"/vms/{vm}/hardware", {"cpus": 2, "memory_mib": 128})],
            ("POST", "/vms/{id}/disks"): [(f"/vms/{vm}/disks", {"size": "1G"})],
            ("PATCH", "/vms/{id}/disks/{target}"): [(f"/vms/{vm}/disks/vda", {"size": "64G"})],
            ("DELETE", "/vms/{id}/disks/{target}"): [(f"/vms/{vm}/disks/vda", None)],
            ("POST", "/vms/{id}/cd"): [(f"/vms/{vm}/cd", {"iso": "any.iso"})],
            ("DELETE", "/vms/{id}/cd"): [(f"/vms/{vm}/cd", None)],
            ("PUT", "/vms/{id}/boot-order"): [(f"/vms/{vm}/boot-order", {"order": ["cd", "disk"]})],
            ("POST", "/vms/{id}/snapshots"): [(f"/vms/{vm}/snapshots", {"name": "ro-snap"})],
            ("DELETE", "/vms/{id}/snapshots/{name}"): [(f"/vms/{vm}/snapshots/ro-snap", None)],
            ("POST", "/vms/{id}/snapshots/{name}/revert"): [(f"/vms/{vm}/snapshots/ro-snap/revert", {})],
            ("POST", "/backup-policies"): [("/backup-policies", {"vm": "vm1", "every": "15m", "keep_last": 4}),
                                           ("/backup-policies", {"group": "Lab", "every": "1h"})],
            ("DELETE", "/backup-policies/{id}"): [(f"/backup-policies/{i['backup_policy']}", None)],
            ("PATCH", "/vms/{id}/ha"): [(f"/vms/{vm}/ha", {"enabled": False})],
            ("POST", "/hosts/{id}/maintenance"): [(f"/hosts/{host}/maintenance", {"on": True})],
            ("PATCH", "/hosts/{id}/fencing"): [(f"/hosts/{host}/fencing", {"command": None})],
            ("POST", "/clusters"): [("/clusters", {"name": "ro-cluster", "hosts": ["t1"], "shared_storage": os.path.join(tmp, "shared2"),
                                                   "tolerate": 0})],
            ("DELETE", "/clusters/{id}"): [(f"/clusters/{i['cluster']}", None)],
            ("POST", "/library/shares"): [("/library/shares", {"path": os.path.join(tmp, "share2")})],
            ("DELETE", "/library/shares/{id}"): [(f"/library/shares/{i['share']}", None)],
            ("POST", "/library/shares/{id}/actions/refresh"): [(f"/library/shares/{i['share']}/actions/refresh", {})],
            ("POST", "/library/shares/{id}/upload"): [(f"/library/shares/{i['share']}/upload?name=ro.qcow2", b"QFI\xfb" + b"\0" * 508)],
            ("POST", "/library/items"): [("/library/items", {"path": os.path.join(self.share, "linux", "later.qcow2")})],
            ("POST", "/templates"): [("/templates", {"name": "ro-tpl", "image": "linux/base.qcow2"})],
            ("POST", "/templates/from-vm"): [("/templates/from-vm", {"vm": "vm1", "name": "ro-capture"})],
            ("DELETE", "/templates/{id}"): [(f"/templates/{i['template']}", None)],
            ("POST", "/templates/{id}/deploy"): [(f"/templates/{i['template']}/deploy", {"name": "ro-dep", "host": "t1"}),
                                                 (f"/templates/{i['template']}/deploy", {"name": "vm1"})],
            ("POST", "/grants"): [("/grants", {"user": "other", "templates": ["tpl"], "group": "Lab"})],
            ("DELETE", "/grants/{id}"): [(f"/grants/{i['grant']}", None)],
            ("POST", "/alerts/{id}/actions/acknowledge"): [(f"/alerts/{i['alert']}/actions/acknowledge", {})],
            ("POST", "/alert-rules"): [("/alert-rules", {"name": "ro-rule", "object_kind": "vm", "metric": "cpu", "comparison": ">",
                                                         "threshold": 50, "severity": "info"})],
            ("PATCH", "/alert-rules/{id}"): [(f"/alert-rules/{i['alert_rule']}", {"enabled": False})],
            ("DELETE", "/alert-rules/{id}"): [(f"/alert-rules/{i['alert_rule']}", None)],
            ("POST", "/webhooks"): [("/webhooks", {"url": "http://127.0.0.1:9/ro"})],
            ("DELETE", "/webhooks/{id}"): [(f"/webhooks/{i['webhook']}", None)],
            ("POST", "/assessments"): [("/assessments", {"name": "ro-srv", "node_exporter": "http://127.0.0.1:9/metrics"})],
            ("DELETE", "/assessments/{id}"): [(f"/assessments/{i['assessment']}", None)],
            ("POST", "/datastores"): [("/datastores", {"name": "ro-ds", "path": os.path.join(tmp, "ds-ro")})],
            ("DELETE", "/datastores/{id}"): [(f"/datastores/{i['datastore']}", None)],
            ("POST", "/datastores/verify-path"): [("/datastores/verify-path", {"path": os.path.join(tmp, "ds1")})],
            ("POST", "/datastores/{id}/actions/{action}"): [
                (f"/datastores/{i['datastore']}/actions/verify", {}), (f"/datastores/{i['datastore']}/actions/gc", {}),
                (f"/datastores/{i['datastore']}/actions/prune", {"keep_last": 1}),
                (f"/datastores/{i['datastore']}/actions/archive", {"vm": "vm1", "to": os.path.join(tmp, "tape")}),
                (f"/datastores/{i['datastore']}/actions/import", {"path": os.path.join(tmp, "ds1")})],
            # Replication (its own tests make real ones).
            # Networks, NICs, pools and volumes (issue 12).
            ("POST", "/networks"): [("/networks", {"name": "ro-net", "group": "Lab", "mode": "nat", "subnet": "10.9.9.0/24"}),
                                    ("/networks", {"name": "ro-net2", "host": "t1", "mode": "isolated"})],
            ("DELETE", "/networks/{id}"): [(f"/networks/{i['network']}", None)],
            ("POST", "/vms/{id}/nics"): [(f"/vms/{vm}/nics", {"network": "net1"})],
            ("DELETE", "/vms/{id}/nics/{mac}"): [(f"/vms/{vm}/nics/52:54:00:00:00:01", None)],
            ("POST", "/hosts/{id}/pools"): [(f"/hosts/{host}/pools", {"name": "ro-pool", "type": "dir", "path": os.path.join(tmp, "ro-pool")})],
            ("DELETE", "/hosts/{id}/pools/{pool}"): [(f"/hosts/{host}/pools/armada", None)],
            ("DELETE", "/hosts/{id}/pools/{pool}/volumes/{volume}"): [(f"/hosts/{host}/pools/armada/volumes/vm1.qcow2", None)],
            ("POST", "/replications"): [("/replications", {"source": "ds", "to_path": os.path.join(tmp, "ro-mirror")})],
            ("DELETE", "/replications/{id}"): [("/replications/1", None)],
            ("POST", "/replications/{id}/actions/run"): [("/replications/1/actions/run", {})],
            ("POST", "/datastores/{id}/replica/missing"): [(f"/datastores/{i['datastore']}/replica/missing", {"digests": ["a" * 64]})],
            ("POST", "/datastores/{id}/replica/chunks"): [(f"/datastores/{i['datastore']}/replica/chunks?digest=" + "a" * 64, b"ACK1" + b"\0" * 12)],
            ("POST", "/datastores/{id}/replica/points"): [(f"/datastores/{i['datastore']}/replica/points",
                                                           {"vm_uuid": "u", "point_id": "p", "meta": {}, "disks": []})],
        }

    # Write operations a read-only user may call, and why.
    ALLOWED = {
        ("POST", "/sessions"): "logging in creates the caller's own session",
        ("DELETE", "/sessions/current"): "logging out ends the caller's own session",
        ("POST", "/placement/ratings"): "rates hosts for a demand: a read with a body, nothing is stored",
        ("POST", "/placement/consolidation"): "plans a consolidation on paper: a calculation, nothing is stored",
    }
    # PATCH /users/{id} is a write operation the walk covers (403 for anyone
    # else, and for a role change of oneself); changing one's own password
    # is allowed and checked in test_own_password_and_session.

    def snapshot(self):
        db = dbdirect.connect(self.d, readonly=True)
        try:
            out = {}
            for t in dbdirect.tables(db):
                if t in VOLATILE_TABLES:
                    continue
                cols = [c for c in dbdirect.columns(db, t) if not VOLATILE_COLUMN.search(c)]
                if t == "host":   # a refresh rewrites what the host reports
                    cols = [c for c in cols if c in ("id", "name", "uri", "group_id", "pool", "pool_path")]
                if not cols:
                    continue
                quoted = ", ".join(f'"{c}"' for c in cols)   # "full" is a word PostgreSQL keeps
                rows = db.execute(f"SELECT {quoted} FROM \"{t}\"").fetchall()
                out[t] = sorted(json.dumps(dict(zip(cols, r)), sort_keys=True, default=str) for r in rows)
            return out
        finally:
            db.close()

    def files(self):
        found = []
        for top in (self.share, self.tmp):
            for dirpath, dirnames, filenames in os.walk(top):
                found += [os.path.join(dirpath, n) for n in dirnames + filenames]
        return sorted(found)

    maxDiff = None

    def test_walk_every_write_endpoint(self):
        if yaml is None:
            self.skipTest("PyYAML (python3-yaml) is not installed")
        cases = self.cases()
        ops = write_operations()
        self.assertEqual(sorted(ops - set(cases) - set(self.ALLOWED)), [],
                         "write operations of docs/openapi.yaml this walk does not cover")
        self.assertEqual(sorted((set(cases) | set(self.ALLOWED)) - ops), [], "cases for operations docs/openapi.yaml does not list")
        # Jobs the setup started (refreshes) end first: their results are not the walk's.
        wait_until(lambda: not [j for j in self.d.ok("GET", "/api/v1/jobs?limit=1000")["items"] if j["state"] in ("queued", "running")],
                   60, what="the setup's jobs to end")
        before, files_before = self.snapshot(), self.files()
        wrong = []
        for (method, template), calls in sorted(cases.items()):
            for path, body in calls:
                if isinstance(body, bytes):
                    st, b = self.d.request(method, "/api/v1" + path, raw=body, token=self.ro)
                else:
                    st, b = self.d.request(method, "/api/v1" + path, body, token=self.ro)
                if st != 403 or not isinstance(b, dict) or b.get("error", {}).get("code") != "forbidden":
                    wrong.append(f"{method} {path} {json.dumps(body) if not isinstance(body, bytes) else '<upload>'} -> {st} {b}")
        self.assertEqual(wrong, [], "write requests of a read-only user that were not refused with 403")
        after = self.snapshot()
        for t in sorted(set(before) | set(after)):
            self.assertEqual(before.get(t), after.get(t), f"table {t} changed while a read-only user was refused")
        self.assertEqual(files_before, self.files(), "files appeared or vanished")
        # Every refusal is audited.
        denied = [a for a in self.d.ok("GET", "/api/v1/audit?limit=1000")["items"] if a["user_name"] == "ro" and a["result"] == "denied"]
        self.assertGreaterEqual(len(denied), sum(len(c) for c in cases.values()))

    def test_allowed_writes_work(self):
        # The exceptions: they answer what they answer to anyone.
        d = self.d
        st, b = d.request("POST", "/api/v1/placement/ratings", {"memory_mib": 64}, token=self.ro)
        self.assertEqual(st, 200, b)
        st, b = d.request("POST", "/api/v1/placement/consolidation", {"host": {"cpus": 16, "memory_mib": 65536},
                                                                      "servers": [{"cpu": 100, "memory_mib": 1024}]}, token=self.ro)
        self.assertEqual(st, 200, b)

    def test_own_password_and_session(self):
        d = self.d
        tok = d.login("ro", "ro-password-1")
        d.ok("PATCH", f"/api/v1/users/{self.ids['ro_user']}", {"password": "ro-password-2"}, token=tok)
        d.ok("PATCH", f"/api/v1/users/{self.ids['ro_user']}", {"password": "ro-password-1"}, token=tok)
        self.assertEqual(d.request("DELETE", "/api/v1/sessions/current", token=tok)[0], 204)
        self.assertEqual(d.request("GET", "/api/v1/vms", token=tok)[0], 401)
        # The password change ended the walk's session too: log in again.
        type(self).ro = d.login("ro", "ro-password-1")



class NoNamesOutsideScope(PopulatedCase):
    """Self-service and delegated users are refused without learning the
    names (or the existence) of hosts, host groups and VMs outside their
    scope."""

    @classmethod
    def _populate(cls):
        d, tmp = cls.d, cls.tmp
        d.ok("POST", "/api/v1/host-groups", {"path": "Lab/Inner"})
        d.ok("POST", "/api/v1/host-groups", {"path": "Hidden-Prod"})
        cls.lab = d.find("host-groups", "Lab")["id"]
        cls.lab_inner = d.find("host-groups", "Lab/Inner")["id"]
        cls.prod = d.find("host-groups", "Hidden-Prod")["id"]
        # The hidden host has far more room, so placement across the whole
        # estate would pick it.
        for name, group, gib in (("lab1", "Lab", 8), ("hidden-host", "Hidden-Prod", 64)):
            xml = os.path.join(tmp, name + ".xml")
            with open(xml, "w") as f:
                f.write("<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>"
                        f"<threads>1</threads><active>8</active></cpu><memory>{gib << 20}</memory></node>\n")
            host, job = d.add_host(name, "test://" + xml, group=group)
            assert job["state"] == "succeeded", job
            setattr(cls, name.replace("-", "_"), host["id"])
        d.create_vm("hidden-vm", "hidden-host")
        d.ok("POST", "/api/v1/users", {"name": "deleg", "password": "deleg-password", "role": "delegated-administrator",
                                       "scopes": ["Lab"]})
        d.ok("POST", "/api/v1/users", {"name": "ss", "password": "ss-password-1", "role": "self-service"})
        cls.deleg = d.login("deleg", "deleg-password")
        cls.ss = d.login("ss", "ss-password-1")
        share = os.path.join(tmp, "share")
        os.makedirs(share)
        qcow2(os.path.join(share, "base.qcow2"), 64 << 20)
        r = d.ok("POST", "/api/v1/library/shares", {"path": share})
        assert d.wait_job(r["job"]["id"])["state"] == "succeeded"
        cls.tpl = d.ok("POST", "/api/v1/templates", {"name": "tpl", "image": "base.qcow2", "cpus": 1, "memory_mib": 64})["id"]
        d.ok("POST", "/api/v1/grants", {"user": "ss", "templates": ["tpl"], "group": "Lab"})

    def refused(self, method, path, body, token, statuses, *hidden):
        st, b = self.d.request(method, "/api/v1" + path, body, token=token)
        self.assertIn(st, statuses, b)
        text = json.dumps(b)
        for name in hidden:
            self.assertNotIn(name, text, f"{method} {path} names '{name}', which the caller may not see: {text}")
        return b

    def test_vm_name_of_another_scope_is_not_confirmed(self):
        # An administrator sees the VM, and is told so.
        b = self.refused("POST", "/vms", {"name": "hidden-vm", "host": "lab1", "memory_mib": 64}, self.d.token, (409,))
        self.assertIn("already exists", b["error"]["message"])
        # A delegated administrator does not: the name just cannot be used.
        b = self.refused("POST", "/vms", {"name": "hidden-vm", "host": "lab1", "memory_mib": 64}, self.deleg, (409,), "already exists")
        self.assertEqual(b["error"]["field"], "name")
        # Nor a self-service user deploying a template.
        b = self.refused("POST", f"/templates/{self.tpl}/deploy", {"name": "hidden-vm"}, self.ss, (409,), "already exists")
        self.assertEqual(b["error"]["field"], "name")
        self.refused("POST", f"/templates/{self.tpl}/deploy", {"name": "hidden-vm"}, self.deleg, (409,), "already exists")
        # A self-service user creates no VMs directly: 403 before any name, host or placement.
        self.refused("POST", "/vms", {"name": "hidden-vm", "memory_mib": 64}, self.ss, (403,), "already exists", "hidden-host", "lab1")
        self.refused("POST", "/vms", {"name": "x1", "memory_mib": 1 << 20}, self.ss, (403,), "hidden-host", "lab1")
        # Nothing was made.
        self.assertEqual(sorted(v["name"] for v in self.d.ok("GET", "/api/v1/vms")["items"]), ["hidden-vm"])

    def test_hosts_and_groups_by_id_stay_unnamed(self):
        # A host given by id that the caller may not see.
        self.refused("POST", "/vms", {"name": "x2", "host_id": self.hidden_host, "memory_mib": 64}, self.deleg, (422,), "hidden-host")
        # A group the caller may not see does not exist for it, whether it
        # does or not.
        b = self.refused("POST", "/vms", {"name": "x3", "host": "lab1", "group": "Hidden-Prod", "memory_mib": 64}, self.deleg, (422,))
        self.assertEqual(b["error"]["code"], "not_found")
        b2 = self.refused("POST", "/vms", {"name": "x3", "host": "lab1", "group": "No-Such", "memory_mib": 64}, self.deleg, (422,))
        self.assertEqual(b["error"]["message"].replace("Hidden-Prod", "No-Such"), b2["error"]["message"])
        # Group paths by id: as a parent of a new group, as a new parent.
        self.refused("POST", "/host-groups", {"name": "x", "parent_id": self.prod}, self.deleg, (422,), "Hidden-Prod")
        self.refused("PATCH", f"/host-groups/{self.lab_inner}", {"parent_id": self.prod}, self.deleg, (422,), "Hidden-Prod")
        self.refused("GET", f"/host-groups/{self.prod}", None, self.deleg, (404,), "Hidden-Prod")
        self.refused("PUT", f"/host-groups/{self.prod}/placement-policy", {"cpu_pct": 5}, self.deleg, (404,), "Hidden-Prod")
        # An existing path outside the scope answers like any other refused
        # path (403), not 409 "already exists".
        b = self.refused("POST", "/host-groups", {"path": "Hidden-Prod"}, self.deleg, (403,))
        self.assertNotIn("already exists", b["error"]["message"])
        self.assertEqual(self.refused("POST", "/host-groups", {"path": "Lab/Inner"}, self.deleg, (409,))["error"]["field"], "path")
        # A migration target given by name that the caller may not see.
        vm = self.d.ok("POST", "/api/v1/vms", {"name": "lab-vm", "host": "lab1", "memory_mib": 64}, token=self.deleg)
        self.d.wait_job(vm["job"]["id"], token=self.deleg)
        self.refused("POST", f"/vms/{vm['vm']['id']}/migrate", {"to": "hidden-host"}, self.deleg, (422,), f"id {self.hidden_host}")
        job = self.d.ok("DELETE", f"/api/v1/vms/{vm['vm']['id']}", token=self.deleg)["job"]
        self.d.wait_job(job["id"], token=self.deleg)  # the next test counts the VMs

    def test_deploy_placement_outside_scope_is_unnamed(self):
        # Without a group, a delegated administrator's deploy either stays
        # inside its scope or is refused without naming the host placement
        # found outside it.
        st, b = self.d.request("POST", f"/api/v1/templates/{self.tpl}/deploy", {"name": "dep1", "start": False}, token=self.deleg)
        self.assertIn(st, (202, 403, 409), b)
        self.assertNotIn("hidden-host", json.dumps(b))
        if st == 202:
            self.assertEqual(b["vms"][0]["host_name"], "lab1", b)
            self.d.wait_job(b["jobs"][0]["id"], token=self.deleg)
            self.d.ok("DELETE", f"/api/v1/vms/{b['vms'][0]['id']}", token=self.deleg)


class SessionFeatures(unittest.TestCase):
    """GET /sessions/current (and the login answer) lists what the server
    offers this user, honestly: a listed feature works for the role, an
    unlisted one is refused."""

    @classmethod
    def setUpClass(cls):
        cls.d = d = Armadad()
        try:
            d.start()
            d.token = d.login()
            d.ok("POST", "/api/v1/host-groups", {"path": "Lab"})
            # A test host of its own with room for the delegated
            # administrator's VM (test:///default's node is full).
            xml = os.path.join(d.dir, "t1.xml")
            with open(xml, "w") as f:
                f.write("<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets><cores>8</cores>"
                        "<threads>1</threads><active>8</active></cpu><memory>16777216</memory></node>\n")
            d.add_host("t1", "test://" + xml, group="Lab")
            for name, role in (("ro", "read-only"), ("ss", "self-service"), ("deleg", "delegated-administrator")):
                body = {"name": name, "password": f"{name}-password-1", "role": role}
                if role == "delegated-administrator":
                    body["scopes"] = ["Lab"]
                d.ok("POST", "/api/v1/users", body)
        except BaseException:
            cls.d.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def features(self, name):
        d = self.d
        password = d.admin_password()[1] if name == "admin" else f"{name}-password-1"
        st, login = d.request("POST", "/api/v1/sessions", {"name": name, "password": password}, auth=False)
        self.assertEqual(st, 201, login)
        cur = d.ok("GET", "/api/v1/sessions/current", token=login["token"])
        self.assertEqual(login["features"], cur["features"])
        return login["token"], set(cur["features"])

    def test_features_per_role(self):
        everything = {"hosts", "create-vm", "operate-vm", "console", "migrate", "change-vm", "operate-host", "maintenance", "ratings",
                      "metrics", "health", "users", "audit", "datastores", "p2v", "templates"}
        _, admin = self.features("admin")
        self.assertEqual(admin, everything)
        _, deleg = self.features("deleg")
        self.assertEqual(deleg, everything - {"users", "audit", "datastores", "p2v"})
        _, ro = self.features("ro")
        self.assertEqual(ro, {"hosts", "ratings", "metrics", "health", "templates"})
        _, ss = self.features("ss")
        self.assertEqual(ss, {"operate-vm", "console", "metrics", "health", "templates", "self-service"})

    def test_listed_features_work_and_unlisted_ones_are_refused(self):
        d = self.d
        probes = {"ratings": ("GET", "/api/v1/placement/ratings?memory_mib=64&group=Lab"),
                  "audit": ("GET", "/api/v1/audit?limit=1"), "users": ("GET", "/api/v1/users"),
                  "health": ("GET", "/api/v1/health"), "self-service": ("GET", "/api/v1/self-service"),
                  "datastores": ("GET", "/api/v1/datastores")}
        for name in ("ro", "ss", "deleg"):
            token, feats = self.features(name)
            for feat, (method, path) in probes.items():
                st, b = d.request(method, path, token=token)
                if feat in feats:
                    self.assertEqual(st, 200, f"{name} has {feat} but {method} {path} -> {st} {b}")
                elif feat != "self-service":   # GET /self-service answers everyone (an empty portal)
                    # 422 when the group in the query is not visible to the caller.
                    self.assertIn(st, (403, 422), f"{name} lacks {feat} but {method} {path} -> {st} {b}")
            st, b = d.request("POST", "/api/v1/vms", {"name": f"{name}-vm", "host": "t1", "memory_mib": 64}, token=token)
            self.assertEqual(st == 202, "create-vm" in feats, f"{name}: POST /vms -> {st} {b}")
            if st == 202:
                d.wait_job(b["job"]["id"], token=token)


if __name__ == "__main__":
    unittest.main()
