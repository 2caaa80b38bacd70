"""A tiny Linux guest for migration tests: a Debian cloud kernel and a
busybox-static initramfs whose /init keeps rewriting a chunk of memory, so a
live migration has dirty pages to chase (DESIGN.md §9: such a guest reaches
its /init in about 2.5 s under TCG).

    from guest import build_guest, guest_xml
    kernel, initrd = build_guest()          # cached under CACHE
    xml = guest_xml("dirty1", kernel, initrd, memory_mib=256, console_log=path)

Nothing is installed on the machine: the Debian packages are fetched with
`apt-get download` (dependency of the linux-image-cloud-amd64 metapackage
resolved by hand) and unpacked with `dpkg-deb -x` into the cache. The
initramfs is a newc cpio archive written here.
"""
import os
import shutil
import stat
import subprocess
import tempfile

CACHE = os.environ.get("ARMADA_GUEST_CACHE", "/var/cache/armada-test/guest")

INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev /tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs -o size=90% tmp /tmp
echo "armada-guest: init reached" > /dev/ttyS0
MIB=$(sed -n 's/.*armada.dirty_mib=\\([0-9]*\\).*/\\1/p' /proc/cmdline)
[ -n "$MIB" ] || MIB=64
echo "armada-guest: dirtying $MIB MiB" > /dev/ttyS0
n=0
while true; do
    dd if=/dev/urandom of=/tmp/dirty bs=1M count=$MIB conv=notrunc 2>/dev/null
    n=$((n + 1))
    echo "armada-guest: pass $n" > /dev/ttyS0
done
"""


# The disk guest (backup tests): loads virtio_blk from the kernel's own
# package, writes the byte patterns its kernel command line names to
# /dev/vda (armada.disk_write=BYTE:OFFSET_MIB:LENGTH_MIB,...; BYTE in hex),
# syncs, says so on the console and idles.
DISK_MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk")
DISK_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in @MODULES@; do insmod /lib/modules/$m.ko 2>/dev/ttyS0; done
echo "armada-guest: init reached" > /dev/ttyS0
i=0
while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
W=$(sed -n 's/.*armada.disk_write=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
for spec in $(echo "$W" | tr ',' ' '); do
    byte=${spec%%:*}; rest=${spec#*:}; off=${rest%%:*}; len=${rest#*:}
    oct=$(printf '%o' 0x$byte)
    head -c $((len * 1048576)) /dev/zero | tr '\\000' "\\\\$oct" | dd of=/dev/vda bs=65536 seek=$((off * 16)) conv=notrunc 2>/dev/ttyS0
done
sync
echo 3 > /proc/sys/vm/drop_caches
echo "armada-guest: disk written" > /dev/ttyS0
while true; do sleep 3600; done
""".replace("@MODULES@", " ".join(DISK_MODULES))


class GuestUnavailable(RuntimeError):
    pass


def _run(argv, cwd=None):
    r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise GuestUnavailable(f"{' '.join(argv)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    return r.stdout


def _download(pkg, into):
    """apt-get download PKG into the directory INTO; returns the .deb path."""
    try:
        _run(["apt-get", "download", "-q", pkg], cwd=into)
    except GuestUnavailable:
        # A fresh machine may not have package lists yet.
        _run(["apt-get", "update", "-qq"])
        _run(["apt-get", "download", "-q", pkg], cwd=into)
    debs = [f for f in os.listdir(into) if f.startswith(pkg + "_") and f.endswith(".deb")]
    if not debs:
        raise GuestUnavailable(f"apt-get download {pkg} left no .deb")
    return os.path.join(into, sorted(debs)[-1])


def _kernel_package(meta_deb):
    """The linux-image-X-cloud-amd64 package a metapackage depends on."""
    deps = _run(["dpkg-deb", "-f", meta_deb, "Depends"])
    for d in deps.split(","):
        name = d.strip().split()[0]
        if name.startswith("linux-image-") and name.endswith("-cloud-amd64") and name != "linux-image-cloud-amd64":
            return name
    raise GuestUnavailable(f"linux-image-cloud-amd64 depends on no kernel image: {deps}")


def _cpio_newc(entries, out_path):
    """Writes a newc cpio archive. entries: (name, mode, data bytes or
    symlink target str)."""
    ino = 1
    with open(out_path, "wb") as f:
        def put(name, mode, data):
            nonlocal ino
            nb = name.encode() + b"\0"
            hdr = "070701" + "".join("%08X" % v for v in (
                ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0))
            ino += 1
            f.write(hdr.encode() + nb)
            f.write(b"\0" * ((4 - (110 + len(nb)) % 4) % 4))
            f.write(data)
            f.write(b"\0" * ((4 - len(data) % 4) % 4))
        for name, mode, data in entries:
            if isinstance(data, str):
                put(name, stat.S_IFLNK | 0o777, data.encode())
            elif data is None:
                put(name, stat.S_IFDIR | mode, b"")
            else:
                put(name, stat.S_IFREG | mode, data)
        put("TRAILER!!!", 0, b"")


def build_guest():
    """Returns (kernel, initrd) paths in the cache, building them once."""
    kernel = os.path.join(CACHE, "vmlinuz")
    initrd = os.path.join(CACHE, "initrd-dirty.cpio")
    if os.path.exists(kernel) and os.path.exists(initrd):
        return kernel, initrd
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise GuestUnavailable(f"'{tool}' is not installed")
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        os.chmod(tmp, 0o755)  # apt's download sandbox user must write here
        meta = _download("linux-image-cloud-amd64", tmp)
        kpkg = _kernel_package(meta)
        kdeb = _download(kpkg, tmp)
        kroot = os.path.join(tmp, "k")
        _run(["dpkg-deb", "-x", kdeb, kroot])
        vm = [f for f in os.listdir(os.path.join(kroot, "boot")) if f.startswith("vmlinuz-")]
        if not vm:
            raise GuestUnavailable(f"{kpkg} has no /boot/vmlinuz-*")
        bdeb = _download("busybox-static", tmp)
        broot = os.path.join(tmp, "b")
        _run(["dpkg-deb", "-x", bdeb, broot])
        with open(os.path.join(broot, "bin", "busybox"), "rb") as f:
            busybox = f.read()
        entries = [("bin", 0o755, None), ("dev", 0o755, None), ("proc", 0o755, None), ("sys", 0o755, None),
                   ("tmp", 0o1777, None), ("bin/busybox", 0o755, busybox), ("bin/sh", 0, "busybox"),
                   ("init", 0o755, INIT.encode())]
        _cpio_newc(entries, initrd + ".tmp")
        shutil.copyfile(os.path.join(kroot, "boot", vm[0]), kernel + ".tmp")
        os.replace(kernel + ".tmp", kernel)
        os.replace(initrd + ".tmp", initrd)
    return kernel, initrd


def build_disk_guest():
    """Returns (kernel, initrd) of the disk guest, built once from one kernel
    package (the modules must match the kernel)."""
    kernel = os.path.join(CACHE, "vmlinuz-disk")
    initrd = os.path.join(CACHE, "initrd-disk.cpio")
    if os.path.exists(kernel) and os.path.exists(initrd):
        return kernel, initrd
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise GuestUnavailable(f"'{tool}' is not installed")
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        os.chmod(tmp, 0o755)
        meta = _download("linux-image-cloud-amd64", tmp)
        kpkg = _kernel_package(meta)
        kroot = os.path.join(tmp, "k")
        _run(["dpkg-deb", "-x", _download(kpkg, tmp), kroot])
        vm = [f for f in os.listdir(os.path.join(kroot, "boot")) if f.startswith("vmlinuz-")]
        if not vm:
            raise GuestUnavailable(f"{kpkg} has no /boot/vmlinuz-*")
        mods = {}
        for dirpath, _, files in os.walk(os.path.join(kroot, "lib", "modules")):
            for f in files:
                if f.endswith(".ko") and f[:-3] in DISK_MODULES:
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        mods[f[:-3]] = fh.read()
        missing = [m for m in DISK_MODULES if m not in mods and m != "virtio_pci_legacy_dev"]
        if missing:
            raise GuestUnavailable(f"{kpkg} lacks the modules {missing}")
        broot = os.path.join(tmp, "b")
        _run(["dpkg-deb", "-x", _download("busybox-static", tmp), broot])
        with open(os.path.join(broot, "bin", "busybox"), "rb") as f:
            busybox = f.read()
        entries = [("bin", 0o755, None), ("dev", 0o755, None), ("proc", 0o755, None), ("sys", 0o755, None),
                   ("lib", 0o755, None), ("lib/modules", 0o755, None),
                   ("bin/busybox", 0o755, busybox), ("bin/sh", 0, "busybox"), ("init", 0o755, DISK_INIT.encode())]
        entries += [(f"lib/modules/{m}.ko", 0o644, d) for m, d in mods.items()]
        _cpio_newc(entries, initrd + ".tmp")
        shutil.copyfile(os.path.join(kroot, "boot", vm[0]), kernel + ".tmp")
        os.replace(kernel + ".tmp", kernel)
        os.replace(initrd + ".tmp", initrd)
    return kernel, initrd


def disk_guest_xml(name, kernel, initrd, disk_path, writes, memory_mib=192, console_log=None, uuid=None):
    """Domain XML for the disk guest under TCG with one qcow2 virtio disk
    (target vda) at disk_path; writes: [(byte, offset_mib, length_mib)]."""
    serial = (f"<serial type='file'><source path='{console_log}' append='on'/><target port='0'/></serial>"
              if console_log else "<serial type='pty'><target port='0'/></serial>")
    uuid_xml = f"<uuid>{uuid}</uuid>" if uuid else ""
    spec = ",".join(f"{b:02x}:{o}:{n}" for b, o, n in writes)
    return f"""<domain type='qemu'>
  <name>{name}</name>{uuid_xml}
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet armada.disk_write={spec}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk_path}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'><model type='virtio'/></interface>
    {serial}
    <memballoon model='none'/>
  </devices>
</domain>
"""


def guest_xml(name, kernel, initrd, memory_mib=256, dirty_mib=64, console_log=None, uuid=None):
    """Domain XML for the tiny guest under TCG (domain type qemu): a real
    kernel crashes or crawls under this machine's nested KVM."""
    serial = (f"<serial type='file'><source path='{console_log}' append='on'/><target port='0'/></serial>"
              if console_log else "<serial type='pty'><target port='0'/></serial>")
    uuid_xml = f"<uuid>{uuid}</uuid>" if uuid else ""
    return f"""<domain type='qemu'>
  <name>{name}</name>{uuid_xml}
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet armada.dirty_mib={dirty_mib}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    {serial}
    <memballoon model='none'/>
  </devices>
</domain>
"""


# The hardware guest (VM hardware tests, issue 12): loads the virtio block
# and balloon drivers of its kernel's own package, brings every vCPU that
# appears online, and prints what it has once a second on its console:
#   armada-hw: mem_kb=<MemTotal> cpus=<online vCPUs> disks=vda:<sectors>,vdb:<sectors>,
HW_MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "virtio_blk",
              "virtio_balloon")
HW_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in @MODULES@; do [ -f /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko 2>/dev/null; done
echo "armada-guest: init reached" > /dev/ttyS0
while true; do
    for c in /sys/devices/system/cpu/cpu[0-9]*; do
        [ -f $c/online ] && [ "$(cat $c/online)" = 0 ] && echo 1 > $c/online
    done
    mem=$(sed -n 's/^MemTotal: *\\([0-9]*\\).*/\\1/p' /proc/meminfo)
    cpus=$(grep -c ^processor /proc/cpuinfo)
    disks=""
    for b in /sys/block/vd*; do [ -e $b ] && disks="$disks${b##*/}:$(cat $b/size),"; done
    echo "armada-hw: mem_kb=$mem cpus=$cpus disks=$disks" > /dev/ttyS0
    sleep 1
done
""".replace("@MODULES@", " ".join(HW_MODULES))


def build_hw_guest():
    """Returns (kernel, initrd) of the hardware guest, built once from one
    kernel package (the modules must match the kernel)."""
    kernel = os.path.join(CACHE, "vmlinuz-hw")
    initrd = os.path.join(CACHE, "initrd-hw.cpio")
    if os.path.exists(kernel) and os.path.exists(initrd):
        return kernel, initrd
    for tool in ("apt-get", "dpkg-deb"):
        if not shutil.which(tool):
            raise GuestUnavailable(f"'{tool}' is not installed")
    os.makedirs(CACHE, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        os.chmod(tmp, 0o755)
        kpkg = _kernel_package(_download("linux-image-cloud-amd64", tmp))
        kroot = os.path.join(tmp, "k")
        _run(["dpkg-deb", "-x", _download(kpkg, tmp), kroot])
        vm = [f for f in os.listdir(os.path.join(kroot, "boot")) if f.startswith("vmlinuz-")]
        if not vm:
            raise GuestUnavailable(f"{kpkg} has no /boot/vmlinuz-*")
        mods = {}
        for dirpath, _, files in os.walk(os.path.join(kroot, "lib", "modules")):
            for f in files:
                if f.endswith(".ko") and f[:-3] in HW_MODULES:
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        mods[f[:-3]] = fh.read()
        if "virtio_blk" not in mods:
            raise GuestUnavailable(f"{kpkg} lacks virtio_blk")
        broot = os.path.join(tmp, "b")
        _run(["dpkg-deb", "-x", _download("busybox-static", tmp), broot])
        with open(os.path.join(broot, "bin", "busybox"), "rb") as f:
            busybox = f.read()
        entries = [("bin", 0o755, None), ("dev", 0o755, None), ("proc", 0o755, None), ("sys", 0o755, None),
                   ("lib", 0o755, None), ("lib/modules", 0o755, None),
                   ("bin/busybox", 0o755, busybox), ("bin/sh", 0, "busybox"), ("init", 0o755, HW_INIT.encode())]
        entries += [(f"lib/modules/{m}.ko", 0o644, d) for m, d in mods.items()]
        _cpio_newc(entries, initrd + ".tmp")
        shutil.copyfile(os.path.join(kroot, "boot", vm[0]), kernel + ".tmp")
        os.replace(kernel + ".tmp", kernel)
        os.replace(initrd + ".tmp", initrd)
    return kernel, initrd


ISOLINUX_BIN = "/usr/lib/ISOLINUX/isolinux.bin"
LDLINUX_C32 = "/usr/lib/syslinux/modules/bios/ldlinux.c32"


def build_boot_iso(kernel, initrd, out_path, cmdline="console=ttyS0 panic=-1 quiet"):
    """A BIOS-bootable ISO (isolinux, El Torito) at out_path that boots
    kernel with initrd and cmdline at once. Needs xorriso and the isolinux
    and syslinux-common packages (scripts/bootstrap)."""
    for f in (ISOLINUX_BIN, LDLINUX_C32):
        if not os.path.exists(f):
            raise GuestUnavailable(f"{f} is missing (install isolinux and syslinux-common)")
    if not shutil.which("xorriso"):
        raise GuestUnavailable("'xorriso' is not installed")
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, "isolinux"))
        shutil.copyfile(ISOLINUX_BIN, os.path.join(root, "isolinux", "isolinux.bin"))
        shutil.copyfile(LDLINUX_C32, os.path.join(root, "isolinux", "ldlinux.c32"))
        shutil.copyfile(kernel, os.path.join(root, "vmlinuz"))
        shutil.copyfile(initrd, os.path.join(root, "initrd"))
        with open(os.path.join(root, "isolinux", "isolinux.cfg"), "w") as f:
            f.write(f"SERIAL 0 115200\nDEFAULT armada\nPROMPT 0\nTIMEOUT 1\nLABEL armada\n  KERNEL /vmlinuz\n"
                    f"  APPEND initrd=/initrd {cmdline}\n")
        _run(["xorriso", "-as", "mkisofs", "-quiet", "-o", out_path, "-V", "ARMADA_TEST", "-b", "isolinux/isolinux.bin",
              "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", "-R", "-J", root])
    return out_path
