"""The large estate the benchmarks share (bench/scale, bench/console): one
armadad with N libvirt test-driver hosts of M VMs each, every host its own
test:///<file>.xml with M generated domains, and what the benchmarks measure
it with (a keep-alive client, CPU and RSS from /proc, the machine)."""
import http.client
import json
import os
import platform
import subprocess
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def machine():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except (OSError, StopIteration):
        cpu = "?"
    with open("/proc/meminfo") as f:
        mem = next(int(l.split()[1]) // 1024 for l in f if l.startswith("MemTotal"))
    return f"{os.cpu_count()} x {cpu}, {mem} MiB RAM, Linux {platform.release()}"


def node_xml(name, n):
    doms = "".join(f"<domain type='test'><name>{name}-vm{j:02d}</name><uuid>{uuid.uuid4()}</uuid>"
                   f"<memory>524288</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>" for j in range(n))
    return (f"<node><cpu><mhz>2000</mhz><model>x86_64</model><nodes>1</nodes><sockets>1</sockets>"
            f"<cores>64</cores><threads>1</threads><active>64</active></cpu>"
            f"<memory>{256 * 1024 * 1024}</memory>{doms}</node>\n")


class Client:
    """One keep-alive connection with a token; timings in ms."""

    def __init__(self, port, token):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method, path, body=None, headers=None):
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        for attempt in (0, 1):
            try:
                t0 = time.perf_counter()
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                raw = r.read()
                ms = (time.perf_counter() - t0) * 1000
                self.last_etag = r.getheader("ETag") or ""
                return r.status, raw, ms
            except (http.client.HTTPException, OSError):
                if attempt:
                    raise
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def json(self, method, path, body=None):
        st, raw, _ = self.call(method, path, body)
        if st >= 300:
            raise RuntimeError(f"{method} {path}: {st} {raw[:300]!r}")
        return json.loads(raw) if raw.strip() else None


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024


def populate(d, c, a, group_of=None):
    """Adds a.hosts hosts h0000... of a.vms_per_host VMs (in group_of(i),
    a host-group path, when given) and waits until every VM is discovered.
    Returns (seconds it took, the largest RSS meanwhile in MiB)."""
    t0 = time.time()
    for i in range(a.hosts):
        name = f"h{i:04d}"
        path = os.path.join(d.dir, f"node-{name}.xml")
        with open(path, "w") as f:
            f.write(node_xml(name, a.vms_per_host))
        body = {"name": name, "uri": "test://" + path}
        if group_of and group_of(i):
            body["group"] = group_of(i)
        c.json("POST", "/api/v1/hosts", body)
    want = a.hosts * a.vms_per_host
    print(f"  {a.hosts} hosts added in {time.time() - t0:.1f} s; waiting for {want} VMs", flush=True)
    deadline = time.time() + a.populate_timeout
    rss_adding = 0
    while True:
        n = sum(h["n_vms"] for h in c.json("GET", "/api/v1/hosts?fields=n_vms")["items"])
        rss_adding = max(rss_adding, proc_rss_mib(d.proc.pid))
        if n >= want:
            break
        if time.time() > deadline:
            raise RuntimeError(f"only {n} of {want} VMs after {a.populate_timeout} s")
        time.sleep(2)
    took = time.time() - t0
    print(f"  {want} VMs discovered {took:.0f} s after the first host was added", flush=True)
    return took, rss_adding
