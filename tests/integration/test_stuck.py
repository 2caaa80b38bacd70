"""Stuck jobs (issue 15): a running job without progress for longer than its
kind's limit is marked stuck (stuck, stuck_since), gets a job.stuck event
and an open alert (rule_name job-stuck), shows in GET /jobs?stuck=true and
`armada job list --stuck`; cancel ends it at once although its worker is
still blocked, what the worker returns later does not change that end, and
the alert closes when the job ends or moves again.

armadad runs with --job-stuck-percent 1 (a vm.start may go 1.2 s without
progress instead of 120 s) and the test hold (--test-hold-starts FILE): a
start on a test host of a VM named in FILE blocks inside libvirt's place,
deaf to cancel requests, until the name goes — a job that really makes no
progress, as a start blocked inside a wedged libvirtd does."""
import os
import shutil
import subprocess
import tempfile
import unittest

from armada_harness import ARMADA, wait_until
from holdcase import HoldCase


class StuckTestCase(HoldCase):
    ARGS = ["--workers", "6", "--job-stuck-percent", "1"]

    @classmethod
    def prepare(cls):
        h, job = cls.d.add_host("st1", cls.d.test_node_uri("st1"))
        assert job["state"] == "succeeded", job

    def vm(self):
        type(self).n += 1
        return self.d.create_vm(f"stuck{self.n}", "st1")

    def job(self, job_id):
        return self.d.ok("GET", f"/api/v1/jobs/{job_id}")

    def stuck_ids(self):
        return [j["id"] for j in self.d.ok("GET", "/api/v1/jobs?stuck=true")["items"]]

    def job_alerts(self, job_id, state="open"):
        return [a for a in self.d.ok("GET", f"/api/v1/alerts?state={state}")["items"]
                if a["object_kind"] == "job" and a["object_id"] == job_id]

    def events(self, kind, job_id):
        return [e for e in self.d.ok("GET", "/api/v1/events?limit=1000")["items"]
                if e["kind"] == kind and e.get("object_kind") == "job" and e.get("object_id") == job_id]

    def held_start(self, vm):
        """Starts vm with its start held; returns the job id once it is stuck."""
        self.set_held([vm["name"]])
        self.addCleanup(self.set_held, [])
        jid = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/start")["job"]["id"]
        wait_until(lambda: jid in self.stuck_ids(), 30, what=f"job {jid} (start of {vm['name']}) to be marked stuck")
        return jid


class TestStuckJobs(StuckTestCase):
    def test_a_stuck_job_is_surfaced_and_cancel_ends_it(self):
        vm = self.vm()
        jid = self.held_start(vm)
        j = self.job(jid)
        self.assertTrue(j["stuck"])
        self.assertIsNotNone(j["stuck_since"])
        self.assertEqual(j["state"], "running")
        # The event and the alert.
        (ev,) = wait_until(lambda: self.events("job.stuck", jid), 10, what="the job.stuck event")
        self.assertEqual(ev["severity"], "warning")
        self.assertIn(f"Job {jid} (vm.start on '{vm['name']}') has made no progress", ev["message"])
        (alert,) = wait_until(lambda: self.job_alerts(jid), 10, what="the job-stuck alert to open")
        self.assertEqual(alert["rule_name"], "job-stuck")
        self.assertIsNone(alert["rule_id"])
        self.assertEqual(alert["severity"], "warning")
        # The CLI lists it.
        home = tempfile.mkdtemp(prefix="armada-stuck-home-")
        self.addCleanup(shutil.rmtree, home, True)
        env = dict(os.environ, HOME=home, ARMADA_URL=self.d.url, ARMADA_TOKEN=self.d.token, ASAN_OPTIONS="detect_leaks=0")
        r = subprocess.run([ARMADA, "job", "list", "--stuck"], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("running (stuck)", r.stdout)
        self.assertIn(vm["name"], r.stdout)
        r = subprocess.run([ARMADA, "-o", "json", "job", "list", "--stuck"], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f'"id": {jid}', r.stdout)
        # Cancel ends it at once, although its worker is still in the hold.
        c = self.d.ok("POST", f"/api/v1/jobs/{jid}/actions/cancel")
        self.assertEqual(c["state"], "cancelled")
        self.assertFalse(c["stuck"])
        self.assertIn("Cancelled while stuck", c["error"])
        self.assertNotIn(jid, self.stuck_ids())
        (closed,) = wait_until(lambda: self.job_alerts(jid, "resolved"), 10, what="the job-stuck alert to resolve")
        self.assertEqual(closed["id"], alert["id"])
        self.assertEqual(self.job_alerts(jid), [])
        self.assertEqual(self.d.request("POST", f"/api/v1/jobs/{jid}/actions/cancel")[0], 409)
        # The VM stays locked while the worker is blocked on it: a stop
        # queued now is passed over by the workers, which run a later job
        # (creating another VM) to its end first.
        stop = self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/stop")["job"]["id"]
        self.vm()
        self.assertEqual(self.job(stop)["state"], "queued")
        # The worker comes back: the job keeps its end, the stop runs.
        self.set_held([])
        wait_until(lambda: f"job {jid} vm.start on '{vm['name']}' came back" in self.d.log_text(), 20,
                   what="the cancelled job's worker to come back")
        after = self.job(jid)
        self.assertEqual(after["state"], "cancelled")
        self.assertIn("Cancelled while stuck", after["error"])
        self.assertEqual(self.d.wait_job(stop, timeout=30)["state"], "succeeded")

    def test_a_stuck_job_that_moves_again_is_no_longer_stuck(self):
        # With one start slot, a start queued behind a held one makes no
        # progress either; once the hold goes it takes the slot and moves.
        vm_a, vm_b = self.vm(), self.vm()
        self.d.ok("PATCH", "/api/v1/hosts/" + str(self.d.find("hosts", "st1")["id"]), {"max_parallel_starts": 1})
        self.addCleanup(self.d.ok, "PATCH", "/api/v1/hosts/" + str(self.d.find("hosts", "st1")["id"]),
                        {"max_parallel_starts": None})
        ja = self.held_start(vm_a)
        jb = self.d.ok("POST", f"/api/v1/vms/{vm_b['id']}/actions/start")["job"]["id"]
        wait_until(lambda: jb in self.stuck_ids(), 30, what=f"the waiting start {jb} to be marked stuck")
        wait_until(lambda: self.job_alerts(jb), 10, what="the waiting start's alert to open")
        self.set_held([])
        for jid in (ja, jb):
            self.assertEqual(self.d.wait_job(jid, timeout=30)["state"], "succeeded")
            wait_until(lambda: not self.job_alerts(jid) and self.job_alerts(jid, "resolved"), 10,
                       what=f"job {jid}'s alert to resolve")
            self.assertFalse(self.job(jid)["stuck"])
        self.assertEqual(self.d.vm(vm_b["id"])["state"], "running")

    def test_the_stuck_filter_is_checked(self):
        st, b = self.d.request("GET", "/api/v1/jobs?stuck=maybe")
        self.assertEqual((st, b["error"]["field"]), (400, "stuck"))
        # A job that ended is never stuck.
        done = self.d.ok("GET", "/api/v1/jobs?state=succeeded")["items"]
        self.assertTrue(done)
        self.assertFalse([j for j in done if j["stuck"]])


if __name__ == "__main__":
    unittest.main()
