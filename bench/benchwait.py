"""Bounded waits for the benchmarks: every wait gives up after its bound
and says what it was still waiting for (which jobs, at what step, stuck or
not), instead of hanging for ever as bench/deploy once did on a job that
a wedged libvirtd never let finish (issue 15)."""
import time


class WaitTimeout(RuntimeError):
    pass


def describe_jobs(jobs):
    """One line per job: id, kind, target, state, progress, step, stuck."""
    out = []
    for j in jobs:
        stuck = f", stuck since {j['stuck_since']}" if j.get("stuck") else ""
        out.append(f"  job {j['id']} {j['kind']} on '{j.get('target_name')}': {j['state']} at {j.get('progress', 0)}%,"
                   f" step '{j.get('step') or ''}'{stuck}")
    return "\n".join(out)


def wait_jobs(d, ids, timeout, what, interval=0.2, fail_on_stuck=True):
    """Polls armadad's jobs ids until every one has ended and returns them.
    Gives up after timeout seconds, or at once when one of them is marked
    stuck (no progress for longer than its kind's limit) and fail_on_stuck,
    raising WaitTimeout naming what and every unfinished job."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = [d.ok("GET", f"/api/v1/jobs/{i}") for i in ids]
        left = [j for j in jobs if j["state"] in ("queued", "running")]
        if not left:
            return jobs
        stuck = [j for j in left if j.get("stuck")]
        if fail_on_stuck and stuck:
            raise WaitTimeout(f"gave up waiting for {what}: {len(stuck)} job(s) are stuck; still unfinished"
                              f" ({len(left)} of {len(ids)}):\n{describe_jobs(left)}")
        if time.monotonic() > deadline:
            raise WaitTimeout(f"gave up after {timeout} s waiting for {what}; still unfinished ({len(left)} of {len(ids)}):\n"
                              f"{describe_jobs(left)}")
        time.sleep(interval)
