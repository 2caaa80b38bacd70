"""A small Debian 12 disk image made the way a physical or foreign machine
would be, for the heavy virt-v2v test (issue 12): a real OS that virt-v2v
can inspect and convert, and that does not boot on virtio until it has.

    from debian_image import build_image, MARKER
    path = build_image()        # raw, cached under CACHE/<VERSION>.raw

The image (2 GiB raw, sparse): one MBR partition, ext4 root; /etc/fstab
names it /dev/sda1 (as on a SATA/IDE machine); GRUB (grub-pc) in the MBR
with the kernel on ttyS0 (root=UUID=..., as update-grub writes it); an
initramfs built with MODULES=list of the IDE/SATA drivers (ata_piix,
ata_generic, ahci, sd_mod): what MODULES=dep gives on such a machine, and
built this way because `dep` where the image is built would see the
builder's devices, not the guest's. The file system is written with
mke2fs -d (no loop device: no udev here makes partition nodes), and GRUB,
grub.cfg and the initramfs are made inside libguestfs's appliance, where
the disk is /dev/sda as on the machine itself. The initramfs holds no virtio_blk (checked with lsinitramfs), so the
guest cannot find its root on a virtio disk. A systemd unit writes MARKER to
/dev/ttyS0 once the root file system is up, and the guest then powers
itself off (so a test can tell "booted" from the console alone).

Built once (debootstrap: minutes; it needs root and Debian's archive) in a
temporary directory under CACHE and renamed into place, so a killed build
leaves nothing that looks finished; VERSION keys it: change it when the
recipe changes. Downloaded packages stay in CACHE/debs for a rebuild.

Run as a program it builds (or finds) the image and prints its path and
the seconds the build took.
"""
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time

CACHE = os.environ.get("ARMADA_V2V_IMAGE_CACHE", "/var/cache/armada-test/v2v-debian")
VERSION = "debian12-sda-grub-1"
MIRROR = os.environ.get("ARMADA_DEBIAN_MIRROR", "http://deb.debian.org/debian")
MARKER = "armada-v2v-guest: userspace reached"
SIZE = "2G"
PACKAGES = ("linux-image-cloud-amd64", "grub-pc", "systemd-sysv", "udev", "kmod", "initramfs-tools", "e2fsprogs")
IDE_MODULES = ("ata_piix", "ata_generic", "ahci", "sd_mod")

MARKER_UNIT = f"""[Unit]
Description=Tell the test on the serial console that userspace is up
After=local-fs.target
DefaultDependencies=no

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "{MARKER} root=$(findmnt -no SOURCE /)" > /dev/ttyS0'
ExecStartPost=/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
"""

GRUB_DEFAULT = """GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200 rootdelay=20"
GRUB_TERMINAL=serial
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
"""


class ImageUnavailable(RuntimeError):
    pass


def image_path():
    return os.path.join(CACHE, VERSION + ".raw")


def _run(argv, timeout=1800, env=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if r.returncode != 0:
        raise ImageUnavailable(f"{' '.join(argv)} exited {r.returncode}: {(r.stderr or r.stdout).strip()[-800:]}")
    return r.stdout


def _write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def _debootstrap(into):
    debs = os.path.join(CACHE, "debs")
    os.makedirs(debs, exist_ok=True)
    _run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}", "--include=" + ",".join(PACKAGES),
          "bookworm", into, MIRROR], timeout=5400, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def _configure(root):
    """What a machine installed on a SATA/IDE disk carries."""
    _write(os.path.join(root, "etc/fstab"), "/dev/sda1 / ext4 errors=remount-ro 0 1\n")
    _write(os.path.join(root, "etc/hostname"), "foreign\n")
    _write(os.path.join(root, "etc/default/grub"), GRUB_DEFAULT)
    conf = os.path.join(root, "etc/initramfs-tools/initramfs.conf")
    with open(conf) as f:
        text = f.read()
    _write(conf, "".join("MODULES=list\n" if l.startswith("MODULES=") else l for l in text.splitlines(True)))
    _write(os.path.join(root, "etc/initramfs-tools/modules"), "".join(m + "\n" for m in IDE_MODULES))
    _write(os.path.join(root, "etc/systemd/system/armada-marker.service"), MARKER_UNIT)
    os.makedirs(os.path.join(root, "etc/systemd/system/multi-user.target.wants"), exist_ok=True)
    os.symlink("/etc/systemd/system/armada-marker.service",
               os.path.join(root, "etc/systemd/system/multi-user.target.wants/armada-marker.service"))
    _run(["chroot", root, "passwd", "-d", "root"])
    # No apt lists or downloaded packages in the image.
    for d in ("var/cache/apt/archives", "var/lib/apt/lists"):
        p = os.path.join(root, d)
        for f in os.listdir(p):
            if f.endswith(".deb") or f.endswith("_Packages"):
                os.unlink(os.path.join(p, f))


def _guestfish(img, script):
    """guestfish on img (libguestfs's appliance: the disk is /dev/sda
    there, its partition /dev/sda1, which a loop device without udev does
    not give); its output."""
    # Always TCG: a /dev/kvm that opens is no proof that KVM runs QEMU
    # (nested, this CI machine: QEMU aborts setting MSR 0x10a), and what
    # the appliance does here is small.
    env = dict(os.environ, LIBGUESTFS_BACKEND="direct", LIBGUESTFS_BACKEND_SETTINGS="force_tcg")
    r = subprocess.run(["guestfish", "--rw", "-a", img], input=script, capture_output=True, text=True, timeout=1800,
                       env=env)
    if r.returncode != 0:
        raise ImageUnavailable(f"guestfish exited {r.returncode}: {(r.stderr or r.stdout).strip()[-800:]}")
    return r.stdout


def _install(tree, img):
    """The tree into a partitioned image (mke2fs -d at the partition's
    offset: no loop device), then GRUB in its MBR, grub.cfg and the
    initramfs from inside it, as on the machine itself."""
    _run(["truncate", "-s", SIZE, img])
    subprocess.run(["sfdisk", "-q", img], input="label: dos\nstart=2048, type=83, bootable\n", text=True,
                   check=True, capture_output=True, timeout=60)
    part_bytes = os.path.getsize(img) - (1 << 20)
    _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", tree, "-E", f"offset={1 << 20}", img,
          f"{part_bytes // 1024}k"], timeout=1800)
    out = _guestfish(img, "\n".join((
        "run",
        "mount /dev/sda1 /",
        'command "grub-install --target=i386-pc /dev/sda"',
        'command "update-grub"',
        'command "update-initramfs -u -k all"',
        "sh \"for f in /boot/initrd.img-*; do echo INITRD $f; lsinitramfs $f | grep -E '/(virtio_blk|ata_piix)[.]ko' || true; done\"",
        "sh \"grep -c console=ttyS0 /boot/grub/grub.cfg\"",
        "umount-all", "")))
    if "INITRD" not in out:
        raise ImageUnavailable(f"the image has no initramfs: {out[-500:]}")
    if "virtio_blk" in out:
        raise ImageUnavailable("the initramfs holds virtio_blk; the image would boot on virtio")
    if "ata_piix" not in out:
        raise ImageUnavailable("the initramfs lacks ata_piix; the image would not boot on IDE either")


def build_image():
    """The cached image's path, built first when it is missing (root only)."""
    path = image_path()
    if os.path.exists(path):
        return path
    if os.geteuid() != 0:
        raise ImageUnavailable("building the Debian image needs root (debootstrap, chroot)")
    for tool in ("debootstrap", "sfdisk", "mkfs.ext4", "chroot", "guestfish"):
        if not shutil.which(tool):
            raise ImageUnavailable(f"'{tool}' is not installed")
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)        # one build at a time; the others then find it
        if os.path.exists(path):
            return path
        # What a killed build left (never anything that looks finished).
        for d in os.listdir(CACHE):
            if d.startswith("build-"):
                _remove_build(os.path.join(CACHE, d))
        return _build(path)


def _build(path):
    tmp = tempfile.mkdtemp(prefix="build-", dir=CACHE)
    try:
        tree = os.path.join(tmp, "tree")
        _debootstrap(tree)
        _configure(tree)
        img = os.path.join(tmp, "image.raw")
        _install(tree, img)
        os.replace(img, path)
    finally:
        _remove_build(tmp)
    return path


def _mounts_under(d):
    with open("/proc/mounts") as f:
        return [l.split()[1] for l in f if l.split()[1].startswith(d + "/")]


def _remove_build(tmp):
    """Removes a build directory, after unmounting what debootstrap or
    _install left mounted in it; never recurses into a mount (a /dev or
    /sys of the host's)."""
    for m in sorted(_mounts_under(tmp), key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True, timeout=120)
    if _mounts_under(tmp):
        raise ImageUnavailable(f"{tmp} still has mounts; left in place")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    t0 = time.monotonic()
    try:
        p = build_image()
    except ImageUnavailable as e:
        print(f"debian_image: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"{p} {time.monotonic() - t0:.0f}")
