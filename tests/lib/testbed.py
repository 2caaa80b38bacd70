"""Python side of Armada's multi-host test bed (tests/testbed/testbed).

    from testbed import Testbed, skip_reason

    class T(unittest.TestCase):
        def test_x(self):
            why = skip_reason()
            if why:
                self.skipTest(why)
            with Testbed(2) as bed:
                h1, h2 = bed.hosts
                bed.virsh("h1", "list", "--all")
                bed.kill("h1")          # power loss
                bed.start("h1")         # boot again

Each bed gets its own id (ARMADA_TESTBED_ID if set, else one derived from
this process id) so two test runs on one machine do not collide.  Leaving the
`with` block always runs `testbed down`, which removes every host, QEMU,
namespace, the bridge and the state directory.
"""
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tests", "testbed", "testbed")


class TestbedError(RuntimeError):
    pass


class VirshError(TestbedError):
    def __init__(self, args, returncode, stdout, stderr):
        self.args_ = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"{' '.join(args)} exited {returncode}: {stderr.strip()}")


def skip_reason():
    """A reason why the test bed cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "the test bed needs root (network, mount and PID namespaces)"
    for tool in ("ip", "unshare", "setsid", "flock", "virsh", "tini"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
            return f"'{tool}' is not installed"
    for daemon in ("libvirtd", "virtlogd", "virtlockd"):
        if not os.access(f"/usr/sbin/{daemon}", os.X_OK):
            return f"/usr/sbin/{daemon} is not installed (libvirt-daemon-system)"
    if not any(os.access(os.path.join(d, "qemu-system-x86_64"), os.X_OK) for d in ("/usr/bin", "/usr/local/bin")):
        return "qemu-system-x86_64 is not installed"
    if not os.path.isdir("/var/lib/libvirt") or not os.path.isdir("/etc/libvirt"):
        return "libvirt's directories are missing (libvirt-daemon-system)"
    if not os.access(SCRIPT, os.X_OK):
        return f"{SCRIPT} is missing"
    return None


def kvm_usable():
    """True when /dev/kvm can be opened (guests may use domain type kvm)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return False
    os.close(fd)
    return True


class Host:
    def __init__(self, name, addr, uri, pid):
        self.name = name
        self.addr = addr
        self.uri = uri
        self.pid = pid

    def __repr__(self):
        return f"Host({self.name} {self.addr} pid {self.pid})"


class Testbed:
    def __init__(self, n_hosts, bed_id=None, timeout=90, net=None, qemu_conf=None):
        self.n_hosts = n_hosts
        self.id = bed_id or os.environ.get("ARMADA_TESTBED_ID") or f"p{os.getpid() % 100000}"
        self.state_dir = f"/tmp/armada-testbed-{self.id}"
        self.shared_dir = os.path.join(self.state_dir, "shared")
        self.timeout = timeout
        self.hosts = []
        self.env = dict(os.environ, ARMADA_TESTBED_ID=self.id, ARMADA_TESTBED_DIR=self.state_dir,
                        ARMADA_TESTBED_TIMEOUT=str(timeout), ARMADA_TESTBED_OWNER=str(os.getpid()))
        self.env["PATH"] = self.env.get("PATH", "") + ":/usr/sbin:/sbin"
        # A developer's own bed may have ARMADA_TESTBED_NET set; this bed picks
        # a free /24 of its own unless told.
        self.env.pop("ARMADA_TESTBED_NET", None)
        if net:
            self.env["ARMADA_TESTBED_NET"] = net
        # Lines appended to every host's qemu.conf (e.g. backup TLS).
        self.env.pop("ARMADA_TESTBED_QEMU_CONF", None)
        if qemu_conf:
            self.env["ARMADA_TESTBED_QEMU_CONF"] = qemu_conf

    # -- the script --------------------------------------------------------
    def run(self, *args, check=True, timeout=None):
        r = subprocess.run([SCRIPT, *args], capture_output=True, text=True, env=self.env,
                           timeout=timeout or self.timeout + 30)
        if check and r.returncode != 0:
            raise TestbedError(f"testbed {' '.join(args)} exited {r.returncode}:\n{r.stderr}{r.stdout}")
        return r

    @staticmethod
    def _parse(lines):
        out = []
        for line in lines.splitlines():
            f = line.split()
            if len(f) >= 4 and f[0].startswith("h"):
                out.append(Host(f[0], f[1], f[2], int(f[3]) if f[3].isdigit() else None))
        return out

    def up(self):
        # Beds of earlier runs that died without their `down`.
        self.run("gc", check=False, timeout=120)
        if os.path.exists(os.path.join(self.state_dir, "bed.env")):
            # Someone else's bed (ARMADA_TESTBED_ID from the environment?):
            # neither use nor tear it down.
            raise TestbedError(f"test bed '{self.id}' is already up ({self.state_dir})")
        r = self.run("up", str(self.n_hosts), check=False)
        if r.returncode != 0:
            self.down(check=False)
            raise TestbedError(f"testbed up {self.n_hosts} failed:\n{r.stderr}{r.stdout}")
        self.hosts = self._parse(r.stdout)
        if len(self.hosts) != self.n_hosts:
            self.down(check=False)
            raise TestbedError(f"testbed up printed {len(self.hosts)} hosts:\n{r.stdout}")
        return self

    def down(self, check=True):
        return self.run("down", check=check, timeout=60)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down(check=exc[0] is None)
        return False

    # -- hosts ---------------------------------------------------------------
    def host(self, name):
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def kill(self, name):
        """Power loss: SIGKILL the host's PID 1; returns once all of it is gone."""
        self.run("kill", name)
        self.host(name).pid = None

    def fence(self, name):
        """Runs `testbed fence NAME`; returns its exit status (0 = confirmed off)."""
        r = self.run("fence", name, check=False)
        if r.returncode == 0:
            self.host(name).pid = None
        return r.returncode

    def start(self, name):
        """Boots a killed host again; returns once its libvirtd answers."""
        r = self.run("start", name)
        (h,) = self._parse(r.stdout)
        self.host(name).pid = h.pid
        return self.host(name)

    def status(self):
        """{name: 'up' | 'booting' | 'off'}"""
        r = self.run("status")
        return {f[0]: f[-1] for f in (line.split() for line in r.stdout.splitlines()) if f}

    def fence_command(self, name):
        """The argv of a fence command for NAME, for handing to Armada."""
        return ["env", f"ARMADA_TESTBED_ID={self.id}", f"ARMADA_TESTBED_DIR={self.state_dir}",
                SCRIPT, "fence", name]

    def virsh(self, name, *args, check=True, timeout=60):
        """Runs `virsh -c <uri of NAME> ARGS`; returns stdout, raises VirshError."""
        argv = ["virsh", "-q", "-c", self.host(name).uri, *args]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise VirshError(argv, r.returncode, r.stdout, r.stderr)
        return r.stdout

    def answers(self, name, timeout=10):
        """True when NAME's libvirtd answers `virsh version`."""
        try:
            r = subprocess.run(["virsh", "-c", self.host(name).uri, "version"], capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return r.returncode == 0

    def netns(self, name):
        return f"armtb{self.id}-{name}"

    def leftovers(self):
        """What of this bed still exists on the machine (empty when clean)."""
        left = []
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        left += [f"netns {l.split()[0]}" for l in ns.splitlines() if l.startswith(f"armtb{self.id}-")]
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        for l in links.splitlines():
            name = l.split(": ")[1].split("@")[0]
            if name == f"armtb{self.id}" or name.startswith(f"vtb{self.id}h"):
                left.append(f"link {name}")
        if os.path.exists(self.state_dir):
            left.append(f"directory {self.state_dir}")
        left += [f"process {pid}: {cmd}" for pid, cmd in processes_mentioning(self.state_dir)]
        return left


def processes_mentioning(text):
    """(pid, cmdline) of live processes whose command line contains TEXT."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            out.append((int(p), cmd.strip()))
    return out
