"""GET /api/v1/events/stream, the server-sent-events stream of events and
job changes: what a caller receives (and, by role, does not), resuming with
Last-Event-ID, the caps, heartbeats past the idle timeout, and the CLI's
--wait following it."""
import http.client
import json
import os
import re
import subprocess
import tempfile
import time
import unittest

import dbdirect
from armada_harness import ARMADA, Armadad, wait_until

STREAM = "/api/v1/events/stream"


class Sse:
    """One stream, read message by message. Messages are dicts with "id",
    "event" and "data" (parsed JSON), or {"comment": text} for a comment
    line such as the heartbeat."""

    def __init__(self, d, token, query="", headers=None, timeout=20):
        self.conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
        h = {"Accept": "text/event-stream"}
        if token:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        self.conn.request("GET", STREAM + query, headers=h)
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.content_type = self.resp.getheader("Content-Type", "")
        self.seen = []

    def next(self):
        """The next message or comment; None at the end of the stream."""
        msg = {}
        while True:
            line = self.resp.readline()
            if not line:
                return None
            line = line.decode().rstrip("\r\n")
            if line == "":
                if msg:
                    if "event" in msg:
                        self.seen.append(msg)
                        return msg
                    msg = {}  # the "retry:" preamble
                continue
            if line.startswith(":"):
                return {"comment": line[1:].strip()}
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                msg["data"] = json.loads(value)
            elif key == "id":
                msg["id"] = int(value)
            else:
                msg[key] = value

    def until(self, pred, what):
        """Reads until pred(message) holds; returns that message. A read
        that waits longer than the timeout fails the test."""
        while True:
            m = self.next()
            if m is None:
                raise AssertionError(f"the stream ended before {what}")
            if "event" in m and pred(m):
                return m

    def until_job_end(self, job_id):
        return self.until(lambda m: m["event"] == "job" and m["data"]["id"] == job_id
                          and m["data"]["state"] in ("succeeded", "failed", "cancelled"), f"job {job_id} ended")

    def close(self):
        self.conn.close()


def mentions(msgs, name):
    return [m for m in msgs if name in json.dumps(m["data"])]


class StreamTestCase(unittest.TestCase):
    ARGS = []

    @classmethod
    def setUpClass(cls):
        cls.d = Armadad(cls.ARGS)
        try:
            cls.d.start()
            cls.d.token = cls.d.login()
            cls.setUpEstate()
        except BaseException:
            cls.d.cleanup()
            raise

    @classmethod
    def setUpEstate(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        cls.d.cleanup()

    def open(self, token=None, query="", headers=None):
        s = Sse(self.d, token or self.d.token, query, headers)
        self.addCleanup(s.close)
        return s

    def metric(self, name):
        st, text = self.d.request("GET", "/metrics")
        self.assertEqual(st, 200)
        return int(re.search(rb"^" + name.encode() + rb" (\d+)$", text, re.M).group(1))

    def act(self, vm, action, token=None):
        """Starts an action on a VM; returns its job id (not waited for)."""
        return self.d.ok("POST", f"/api/v1/vms/{vm['id']}/actions/{action}", token=token)["job"]["id"]


class TestStream(StreamTestCase):
    @classmethod
    def setUpEstate(cls):
        d = cls.d
        d.ok("POST", "/api/v1/host-groups", {"path": "Lab"})
        d.ok("POST", "/api/v1/host-groups", {"path": "Prod"})
        d.add_host("lab1", d.test_node_uri("lab1"), group="Lab")
        d.add_host("prod1", d.test_node_uri("prod1"), group="Prod")
        d.ok("POST", "/api/v1/users", {"name": "deleg", "password": "deleg-pass", "role": "delegated-administrator",
                                       "scopes": ["Lab"]})
        for u in ("ss1", "ss2"):
            d.ok("POST", "/api/v1/users", {"name": u, "password": u + "-password", "role": "self-service"})
        cls.deleg = d.login("deleg", "deleg-pass")
        cls.ss1 = d.login("ss1", "ss1-password")
        cls.ss2 = d.login("ss2", "ss2-password")
        cls.labvm = d.create_vm("labvm", "lab1")
        cls.prodvm = d.create_vm("prodvm", "prod1")
        # Self-service users create VMs through templates and grants; here
        # two VMs are simply handed to them in the database.
        cls.ss1vm = d.create_vm("ss1vm", "prod1")
        cls.ss2vm = d.create_vm("ss2vm", "prod1")
        db = dbdirect.connect(d, timeout=30)
        try:
            for vm, user in ((cls.ss1vm, "ss1"), (cls.ss2vm, "ss2")):
                db.execute("UPDATE vm SET owner_id = (SELECT id FROM \"user\" WHERE name = ?) WHERE id = ?", (user, vm["id"]))
            db.commit()
        finally:
            db.close()

    def test_vm_action_progress_and_end(self):
        s = self.open()
        self.assertEqual((s.status, s.content_type), (200, "text/event-stream"))
        job = self.act(self.labvm, "start")
        end = s.until_job_end(job)
        self.assertEqual(end["data"]["state"], "succeeded")
        self.assertEqual(end["data"]["target_name"], "labvm")
        # The same object GET /jobs/{id} returns.
        self.assertEqual(end["data"], self.d.ok("GET", f"/api/v1/jobs/{job}"))
        mine = [m for m in s.seen if m["event"] == "job" and m["data"]["id"] == job]
        # A live stream may fold changes that come faster than it reads
        # into the latest; the states it shows still go forward.
        order = ["queued", "running", "succeeded"]
        states = [order.index(m["data"]["state"]) for m in mine]
        self.assertEqual(states, sorted(states))
        self.assertEqual(mine[-1], end)
        ids = [m["id"] for m in s.seen]
        self.assertEqual(ids, sorted(set(ids)), "ids increase")
        self.assertTrue(any(m["event"] == "event" and m["data"]["object_name"] == "labvm" for m in s.seen), s.seen)
        self.d.wait_job(self.act(self.labvm, "kill"))

    def test_job_filter_follows_one_job_to_its_end(self):
        other = self.open(query="?kinds=vm.*")
        s = self.open(query=f"?job={self.act(self.prodvm, 'start')}")
        msgs = []
        while (m := s.next()) is not None:
            if "event" in m:
                msgs.append(m)
        self.assertTrue(msgs)
        job = msgs[0]["data"]["id"]
        self.assertEqual({(m["event"], m["data"]["id"]) for m in msgs}, {("job", job)})
        self.assertEqual(msgs[-1]["data"]["state"], "succeeded")
        # kinds= passes only the kinds asked for (events and jobs alike).
        other.until_job_end(job)
        self.assertTrue(all(m["data"]["kind"].startswith("vm.") for m in other.seen))
        # A job that has ended: its state, and the stream ends (the
        # harness checks this answer against docs/openapi.yaml).
        st, body = self.d.request("GET", f"{STREAM}?job={job}")
        self.assertEqual(st, 200)
        self.assertIn(b"event: job", body)
        self.assertIn(b'"state":"succeeded"', body)
        self.d.wait_job(self.act(self.prodvm, "kill"))

    def test_object_filter(self):
        s = self.open(query=f"?object_type=vm&object_id={self.labvm['id']}")
        self.d.wait_job(self.act(self.prodvm, "start"))
        job = self.act(self.labvm, "start")
        s.until_job_end(job)
        self.assertFalse(mentions(s.seen, "prodvm"), s.seen)
        self.d.wait_job(self.act(self.labvm, "kill"))
        self.d.wait_job(self.act(self.prodvm, "kill"))

    def test_needs_a_token_and_good_parameters(self):
        st, body = self.d.request("GET", STREAM, auth=False)
        self.assertEqual((st, body["error"]["code"]), (401, "unauthenticated"))
        self.assertEqual(self.d.request("GET", STREAM, token="f" * 64)[0], 401)
        for query, field in (("?object_id=3", "object_type"), ("?object_type=vm", "object_id"), ("?job=0", "job"),
                             ("?since=-1", "since"), ("?kinds=VM;drop", "kinds")):
            st, body = self.d.request("GET", STREAM + query)
            self.assertEqual((st, body["error"]["field"]), (400, field), query)
        st, body = self.d.request("GET", STREAM, headers={"Last-Event-ID": "yesterday"})
        self.assertEqual((st, body["error"]["field"]), (400, "Last-Event-ID"))
        self.assertEqual(self.d.request("GET", f"{STREAM}?job=999999")[0], 404)

    def test_self_service_sees_only_its_own(self):
        s1 = self.open(self.ss1)
        s2 = self.open(self.ss2)
        self.d.wait_job(self.act(self.prodvm, "start"))
        self.d.wait_job(self.act(self.prodvm, "kill"))
        j1 = self.act(self.ss1vm, "start", token=self.ss1)
        self.d.wait_job(j1)
        # Messages come in order: once ss2's own job has ended, everything
        # before it has been through ss2's filter.
        j2 = self.act(self.ss2vm, "start", token=self.ss2)
        s1.until_job_end(j1)
        s2.until_job_end(j2)
        self.assertTrue(mentions(s1.seen, "ss1vm"))
        self.assertTrue(any(m["event"] == "event" for m in s1.seen), s1.seen)
        for other in ("prodvm", "ss2vm"):
            self.assertFalse(mentions(s1.seen, other), s1.seen)
        for other in ("prodvm", "ss1vm"):
            self.assertFalse(mentions(s2.seen, other), s2.seen)
        # Nor through a filter naming the other's object or job.
        self.assertEqual(self.d.request("GET", f"{STREAM}?job={j1}", token=self.ss2)[0], 404)
        self.d.wait_job(self.act(self.ss1vm, "kill"))
        self.d.wait_job(self.act(self.ss2vm, "kill"))

    def test_delegated_admin_sees_only_its_groups(self):
        s = self.open(self.deleg)
        self.d.wait_job(self.act(self.prodvm, "start"))
        self.d.wait_job(self.act(self.prodvm, "kill"))
        job = self.act(self.labvm, "start")  # the administrator's job, in Lab
        end = s.until_job_end(job)
        self.assertEqual(end["data"]["target_name"], "labvm")
        self.assertFalse(mentions(s.seen, "prodvm"), s.seen)
        self.assertFalse(mentions(s.seen, "prod1"), s.seen)
        self.d.wait_job(self.act(self.labvm, "kill"))

    def test_resume_replays_exactly_what_was_missed(self):
        live = self.open()
        j1 = self.act(self.labvm, "start")
        mark = live.until_job_end(j1)["id"]
        j2 = self.act(self.labvm, "pause")
        last = live.until_job_end(j2)["id"]
        missed = [m for m in live.seen if mark < m["id"] <= last]
        self.assertTrue(any(m["event"] == "event" for m in missed), missed)
        for how in ({"headers": {"Last-Event-ID": str(mark)}}, {"query": f"?since={mark}"}):
            again = self.open(**how)
            again.until(lambda m: m["id"] >= last, f"message {last}")
            got = [m for m in again.seen if m["id"] <= last]
            self.assertTrue(got and got[0]["id"] > mark)
            # Every event, exactly; every job in its latest state, once.
            self.assertEqual([m for m in got if m["event"] == "event"], [m for m in missed if m["event"] == "event"])
            jobs = [m for m in got if m["event"] == "job"]
            self.assertEqual(len({m["data"]["id"] for m in jobs}), len(jobs))
            self.assertIn(missed[-1], got)
            latest = {}
            for m in missed:
                if m["event"] == "job":
                    latest[m["data"]["id"]] = m
            self.assertEqual(sorted(jobs, key=lambda m: m["id"]), sorted(latest.values(), key=lambda m: m["id"]))
        self.d.wait_job(self.act(self.labvm, "kill"))


class TestStreamLimits(StreamTestCase):
    # A short idle timeout: heartbeats every half of it, and closed
    # streams are noticed (and their places freed) as quickly.
    ARGS = ["--max-streams", "3", "--max-streams-per-user", "2", "--idle-timeout-s", "2"]

    @classmethod
    def setUpEstate(cls):
        cls.d.ok("POST", "/api/v1/users", {"name": "ro", "password": "ro-password", "role": "read-only"})
        cls.ro = cls.d.login("ro", "ro-password")

    def setUp(self):
        # The streams of the test before are closed; armadad notices at
        # their next heartbeat.
        wait_until(lambda: self.metric("armada_event_streams") == 0, 20, interval=0.1, what="no stream left open")

    def test_caps_per_user_and_overall(self):
        a = [self.open(), self.open()]
        self.assertEqual([s.status for s in a], [200, 200])
        st, body = self.d.request("GET", STREAM)
        self.assertEqual((st, body["error"]["code"]), (429, "too_many_streams"))
        self.assertIn("already has 2 event streams open", body["error"]["message"])
        r = self.open(self.ro)
        self.assertEqual(r.status, 200)
        st, body = self.d.request("GET", STREAM, token=self.ro)
        self.assertEqual(st, 429)
        self.assertIn("already serves 3 event streams", body["error"]["message"])
        # A stream that is closed gives its place back.
        for s in a:
            s.close()
        wait_until(lambda: self.open().status == 200, 20, interval=0.2, what="a closed stream's place to be free")

    def test_logout_ends_the_stream(self):
        token = self.d.login("ro", "ro-password")
        s = self.open(token)
        self.assertEqual(s.status, 200)
        self.d.ok("DELETE", "/api/v1/sessions/current", token=token)
        while (m := s.next()) is not None:
            self.assertNotIn("event", m)

    def test_scope_change_ends_a_delegated_stream(self):
        # A delegated administrator's stream is filtered by the scopes it
        # was opened with: a change of scope ends it (at the next
        # heartbeat), and the reconnect sees what the new scopes allow.
        d = self.d
        d.ok("POST", "/api/v1/host-groups", {"path": "ScopeA"})
        d.ok("POST", "/api/v1/host-groups", {"path": "ScopeB"})
        u = d.ok("POST", "/api/v1/users", {"name": "dscope", "password": "dscope-pass", "role": "delegated-administrator",
                                           "scopes": ["ScopeA"]})
        token = d.login("dscope", "dscope-pass")
        kept = self.open(token)
        self.assertEqual(kept.status, 200)
        # Two heartbeats pass with the scopes unchanged: the stream stays.
        start = time.monotonic()
        while time.monotonic() - start < 2.5:
            self.assertIsNotNone(kept.next(), "the stream ended while its caller's scopes were unchanged")
        d.ok("PATCH", f"/api/v1/users/{u['id']}", {"scopes": ["ScopeB"]})
        deadline = time.monotonic() + 15
        while kept.next() is not None:
            self.assertLess(time.monotonic(), deadline, "the stream outlived its caller's change of scope")

    def test_stream_outlives_the_idle_timeout(self):
        s = self.open(self.ro)
        self.assertEqual(s.status, 200)
        start = time.monotonic()
        beats = 0
        while time.monotonic() - start < 5:  # more than twice the 2 s idle timeout
            m = s.next()
            self.assertIsNotNone(m, "the stream was closed")
            if m.get("comment") == "keepalive":
                beats += 1
        self.assertGreaterEqual(beats, 3)
        # Still a live stream: a job started now comes through.
        self.d.add_host("t1", "test:///default")
        s.until(lambda m: m["event"] == "job" and m["data"]["kind"] == "host.refresh", "the host's first refresh")


class TestCliWait(StreamTestCase):
    ARGS = ["--ensure-host", "t1=test:///default", "--max-streams-per-user", "1"]

    @classmethod
    def setUpEstate(cls):
        cls.home = tempfile.mkdtemp(prefix="armada-stream-home-")
        cls.env = dict(os.environ, HOME=cls.home, ARMADA_URL=cls.d.url, ASAN_OPTIONS="detect_leaks=0")
        for k in ("ARMADA_TOKEN", "ARMADA_USER", "ARMADA_PASSWORD"):
            cls.env.pop(k, None)
        name, pw = cls.d.admin_password()
        r = cls.cli_run("login", "--user", name, "--password-stdin", stdin=pw + "\n")
        assert r.returncode == 0, r.stderr
        cls.vm = cls.d.create_vm("waitvm", "t1")

    @classmethod
    def tearDownClass(cls):
        subprocess.run(["rm", "-rf", cls.home])
        super().tearDownClass()

    @classmethod
    def cli_run(cls, *args, stdin=None):
        return subprocess.run([ARMADA, *args], capture_output=True, text=True, env=cls.env, input=stdin, timeout=120)

    def opened(self):
        return self.metric("armada_event_streams_opened_total")

    def wait_cli(self, action):
        r = self.cli_run("vm", action, "waitvm", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(r"^job (\d+) succeeded: vm\.\w+ waitvm$", r.stdout, re.M)
        self.assertTrue(m, r.stdout)
        # It returned after the job's end, not before.
        job = self.d.ok("GET", f"/api/v1/jobs/{m.group(1)}")
        self.assertEqual(job["state"], "succeeded")
        self.assertIn(f"job {m.group(1)} vm.{action}: 100% ", r.stderr)
        return r

    def test_wait_follows_the_stream(self):
        before = self.opened()
        self.wait_cli("start")
        self.assertEqual(self.opened(), before + 1, "--wait opened an event stream")
        self.assertEqual(self.d.vm(self.vm["id"])["state"], "running")
        r = self.cli_run("vm", "kill", "waitvm", "--wait", "--output", "json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["state"], "succeeded")

    def test_wait_polls_when_the_stream_is_refused(self):
        # The one stream the administrator may hold is taken: the CLI gets
        # 429 and polls, with the same outcome and output.
        hold = self.open()
        self.assertEqual(hold.status, 200)
        before = self.opened()
        self.wait_cli("start")
        self.assertEqual(self.opened(), before)
        self.d.wait_job(self.act(self.vm, "kill"))


if __name__ == "__main__":
    unittest.main()
