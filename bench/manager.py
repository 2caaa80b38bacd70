#!/usr/bin/env python3
"""bench/manager: manager takeover time (issue 14), for the "Manager
takeover" section of bench/results/store.md.

Two armadads share one store (a SQLite file in a temporary directory, or
--db URL: a PostgreSQL database); the active one is killed with SIGKILL
and the time from the kill to the standby holding the lease (its own
GET /api/v1/managers says active, polled every 20 ms) is measured. A new
standby is started for the next trial; --trials of them (10), reported as
median and max, with the lease TTL (--lease-ttl, 6s by default: the bound
is TTL + TTL/3 plus the promotion) and the load average.

    python3 bench/manager.py --build build [--trials 10] [--lease-ttl 6s] [--db URL] [--out DIR]

takeover_trials() is the function bench/store calls."""
import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(ROOT, "tests", "lib")]


def _ttl_ms(ttl):
    return int(ttl[:-2]) if ttl.endswith("ms") else int(ttl.rstrip("s")) * 1000


def takeover_trials(build, trials=10, lease_ttl="6s", db=None, log=print):
    """Runs the trials; returns {"times": [s, ...], "median": s, "max": s,
    "lease_ttl": lease_ttl, "engine": "sqlite"|"postgresql", "load": (1, 5, 15)}."""
    os.environ["ARMADA_BUILD"] = os.path.abspath(build)
    os.environ.setdefault("ARMADA_OPENAPI_CHECK", "0")
    import armada_harness
    armada_harness.BUILD = os.environ["ARMADA_BUILD"]
    armada_harness.ARMADAD = os.path.join(armada_harness.BUILD, "src", "daemon", "armadad")
    from armada_harness import Armadad, wait_until
    tmp = tempfile.mkdtemp(prefix="armada-bench-manager-")
    db = db or os.path.join(tmp, "shared.db")
    args = ["--lease-ttl", lease_ttl, "--db", db]
    alive = []
    times = []

    def active(d, token):
        st, body = d.request("GET", "/api/v1/managers", token=token)
        return st == 200 and any(m["this"] and m["active"] for m in body["managers"])

    try:
        a = Armadad(args).start()
        alive.append(a)
        token = a.login()
        wait_until(lambda: active(a, token), 30, what="the first armadad to be active")
        for i in range(trials):
            b = Armadad(args).start()
            alive.append(b)
            time.sleep(_ttl_ms(lease_ttl) / 3000 + 0.2)  # b has seen the lease once: a real standby
            assert not active(b, token)
            t0 = time.monotonic()
            a.proc.send_signal(signal.SIGKILL)
            a.proc.wait()
            wait_until(lambda: active(b, token), 60, interval=0.02, what="the standby to take over")
            took = time.monotonic() - t0
            times.append(took)
            log(f"trial {i + 1}: takeover in {took:.2f} s")
            a.cleanup()
            alive.remove(a)
            a = b
    finally:
        for d in alive:
            d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"times": times, "median": statistics.median(times), "max": max(times), "lease_ttl": lease_ttl,
            "engine": "postgresql" if db.startswith(("postgresql:", "postgres:")) else "sqlite", "load": os.getloadavg()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--lease-ttl", default="6s")
    ap.add_argument("--db", help="a PostgreSQL URL (default: a SQLite file in a temporary directory)")
    ap.add_argument("--out", help="a directory: write the Markdown table to DIR/manager.md (bench/store reads it)")
    o = ap.parse_args()
    r = takeover_trials(o.build, o.trials, o.lease_ttl, o.db)
    md = ["Two armadads on one store on this machine; the active one killed with SIGKILL; the time until the standby"
          " holds the lease and takes writes (its GET /managers, polled every 20 ms). Bound: TTL + TTL/3 + promotion.",
          "",
          "| store | lease TTL | trials | median | max | every trial (s) | load (1/5/15 min) |",
          "|---|---|---|---|---|---|---|",
          f"| {r['engine']} | {r['lease_ttl']} | {len(r['times'])} | {r['median']:.2f} s | {r['max']:.2f} s |"
          f" {' '.join(f'{t:.2f}' for t in r['times'])} | {' / '.join(f'{x:.1f}' for x in r['load'])} |"]
    print("\n".join(md))
    if o.out:
        os.makedirs(o.out, exist_ok=True)
        with open(os.path.join(o.out, "manager.md"), "w") as f:
            f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
