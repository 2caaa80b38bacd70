"""A "physical server" for P2V tests (issue 12): sshd with key-only auth and
throwaway keys made here, on loopback or inside a network namespace of its
own (a veth pair to this machine), for root only.

    with SshServer(tmpdir, netns=True) as srv:
        srv.addr, srv.port         # where armadad reaches it
        srv.client_key             # armadad's --p2v-ssh-key
        srv.fingerprint            # "SHA256:..." of its host key
        srv.known_hosts()          # a known_hosts file naming it

Everything it made (sshd, the namespace, the veth) goes on exit, even when
the test failed."""
import os
import shutil
import signal
import socket
import subprocess
import time


def skip_reason():
    if os.geteuid() != 0:
        return "sshd for the P2V server needs root"
    for tool in ("/usr/sbin/sshd", shutil.which("ssh-keygen"), shutil.which("ssh"), shutil.which("ssh-keyscan")):
        if not tool or not os.access(tool, os.X_OK):
            return "openssh-server / openssh-client is not installed (scripts/bootstrap)"
    return None


def _run(*argv, **kw):
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=60, **kw)


def release_server(cls):
    """For a test class's release(): stops cls.srv (an SshServer) and
    detaches cls.loop (the "server's" loop device), whichever is set,
    and clears them."""
    try:
        if getattr(cls, "srv", None):
            cls.srv.__exit__(None, None, None)
            cls.srv = None
    finally:
        if getattr(cls, "loop", None):
            subprocess.run(["losetup", "-d", cls.loop], capture_output=True)
            cls.loop = None


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class SshServer:
    def __init__(self, tmp, netns=False):
        self.tmp = tmp
        self.use_netns = netns
        self.ns = f"armp2v{os.getpid() % 100000}" if netns else None
        self.proc = None
        self.addr = None
        self.port = None
        self._veth = None

    # -- set-up ---------------------------------------------------------------
    def keys(self):
        self.host_key = os.path.join(self.tmp, "ssh_host_ed25519_key")
        self.client_key = os.path.join(self.tmp, "armada_p2v_key")
        for k in (self.host_key, self.client_key):
            if not os.path.exists(k):
                _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k)
        self.fingerprint = _run("ssh-keygen", "-l", "-E", "sha256", "-f", self.host_key + ".pub").stdout.split()[1]
        self.authorized = os.path.join(self.tmp, "authorized_keys")
        shutil.copyfile(self.client_key + ".pub", self.authorized)
        os.chmod(self.authorized, 0o600)

    def _netns_up(self):
        n = os.getpid() % 200 + 20
        self.addr = f"10.213.{n}.2"
        host_if, ns_if = f"vp2v{n}a", f"vp2v{n}b"
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        _run("ip", "netns", "add", self.ns)
        self._veth = host_if
        _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _run("ip", "link", "set", ns_if, "netns", self.ns)
        _run("ip", "addr", "add", f"10.213.{n}.1/30", "dev", host_if)
        _run("ip", "link", "set", host_if, "up")
        _run("ip", "netns", "exec", self.ns, "ip", "addr", "add", f"{self.addr}/30", "dev", ns_if)
        _run("ip", "netns", "exec", self.ns, "ip", "link", "set", ns_if, "up")
        _run("ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up")

    def start(self):
        self.keys()
        if self.use_netns:
            self._netns_up()
            self.port = 22
        else:
            self.addr = "127.0.0.1"
            self.port = free_port()
        os.makedirs("/run/sshd", exist_ok=True)   # sshd's privilege separation directory
        cfg = os.path.join(self.tmp, "sshd_config")
        with open(cfg, "w") as f:
            f.write(f"Port {self.port}\nListenAddress {self.addr}\nHostKey {self.host_key}\n"
                    f"AuthorizedKeysFile {self.authorized}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
                    f"PidFile {self.tmp}/sshd.pid\nLogLevel ERROR\nMaxStartups 50\n")
        argv = ["/usr/sbin/sshd", "-D", "-e", "-f", cfg]
        if self.ns:
            argv = ["ip", "netns", "exec", self.ns] + argv
        self.log = open(os.path.join(self.tmp, "sshd.log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {open(self.log.name).read()}")
            if self.ssh("true", check=False).returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"sshd did not answer: {open(self.log.name).read()}")

    # -- use ------------------------------------------------------------------
    def known_hosts(self):
        path = os.path.join(self.tmp, "known_hosts")
        with open(self.host_key + ".pub") as f:
            typ, key = f.read().split()[:2]
        name = self.addr if self.port == 22 else f"[{self.addr}]:{self.port}"
        with open(path, "w") as f:
            f.write(f"{name} {typ} {key}\n")
        return path

    def ssh(self, *cmd, check=True):
        argv = ["ssh", "-F", "/dev/null", "-i", self.client_key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.known_hosts()}", "-o", "ConnectTimeout=5", "-p", str(self.port),
                f"root@{self.addr}", *cmd]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=check)

    # -- tear-down --------------------------------------------------------------
    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        if self.ns:
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        if self._veth:
            subprocess.run(["ip", "link", "del", self._veth], capture_output=True)
            self._veth = None
        if getattr(self, "log", None):
            self.log.close()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()
        return False
