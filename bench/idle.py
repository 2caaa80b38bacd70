#!/usr/bin/env python3
"""Idle CPU of armadad with N test-driver hosts x V domains (quick probe)."""
import os, sys, time, json
sys.path.insert(0, os.path.join(os.environ["ARMADA_ROOT"], "tests/lib"))
from armada_harness import Armadad, wait_until
N = int(sys.argv[1]); V = int(sys.argv[2]); SECS = int(sys.argv[3]) if len(sys.argv) > 3 else 30
def dom(i, j):
    u = f"{i:08x}-0000-4000-8000-{j:012x}"
    return (f"<domain type='test'><name>h{i}-vm{j}</name><uuid>{u}</uuid><memory>65536</memory>"
            f"<vcpu>1</vcpu><os><type>hvm</type></os></domain>")
with Armadad(args=["--refresh-interval-ms", "5000"] + os.environ.get("EXTRA", "").split()) as d:
    d.token = d.login()
    t0 = time.time()
    for i in range(N):
        uri = d.test_node_uri(f"n{i}", domains="".join(dom(i, j) for j in range(V)))
        d.ok("POST", "/api/v1/hosts", {"name": f"n{i}", "uri": uri})
    wait_until(lambda: len(d.ok("GET", "/api/v1/vms")["items"]) >= N * V, 600, interval=1, what="all VMs")
    print(f"registered {N} hosts, {N*V} VMs in {time.time()-t0:.1f}s", flush=True)
    time.sleep(15)
    def cpu():
        f = open(f"/proc/{d.proc.pid}/stat").read().split(")")[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    c0, w0 = cpu(), time.time()
    time.sleep(SECS)
    c1, w1 = cpu(), time.time()
    rss = int([l for l in open(f"/proc/{d.proc.pid}/status") if l.startswith("VmRSS")][0].split()[1]) // 1024
    if os.environ.get("PERF"):
        import subprocess
        subprocess.run(["perf", "record", "-F", "499", "--call-graph", os.environ.get("PERF_CALLGRAPH", "fp"), "-p", str(d.proc.pid), "-o", os.environ["PERF"], "--", "sleep", "15"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    print(f"idle CPU {100*(c1-c0)/(w1-w0):.1f}% of a core over {w1-w0:.0f}s, RSS {rss} MiB")
