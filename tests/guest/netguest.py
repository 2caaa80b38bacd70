"""The network guest (issue 12's system test): the tiny guest's kernel and
busybox with virtio-net, whose /init brings up eth0 with the address its
kernel command line names and pings a peer once a second, saying on the
serial console what it sees:

    armada-guest: net up 10.253.77.101/24        (eth0 is there, address set)
    armada-guest: nics eth0 eth1                 (/sys/class/net, each round)
    armada-guest: ping 10.253.77.102 ok|fail

    from netguest import build_net_guest, net_guest_xml
    kernel, initrd = build_net_guest()           # cached under guest.CACHE

Built like guest.build_disk_guest (one kernel package, its own modules)."""
import os
import tempfile

from guest import CACHE, GuestUnavailable, _cpio_newc, _download, _kernel_package, _run

NET_MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "failover",
               "net_failover", "virtio_net")

NET_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
for m in @MODULES@; do insmod /lib/modules/$m.ko 2>/dev/ttyS0; done
echo "armada-guest: init reached" > /dev/ttyS0
ADDR=$(sed -n 's/.*armada.addr=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
PEER=$(sed -n 's/.*armada.peer=\\([^ ]*\\).*/\\1/p' /proc/cmdline)
ip link set lo up
up=0
while true; do
    if [ $up = 0 ] && [ -e /sys/class/net/eth0 ]; then
        ip addr add "$ADDR" dev eth0 && ip link set eth0 up && up=1
        echo "armada-guest: net up $ADDR" > /dev/ttyS0
    fi
    echo "armada-guest: nics $(ls /sys/class/net | tr '\\n' ' ')" > /dev/ttyS0
    if [ $up = 1 ] && [ -n "$PEER" ]; then
        if ping -c 1 -W 1 "$PEER" >/dev/null 2>&1; then
            echo "armada-guest: ping $PEER ok" > /dev/ttyS0
        else
            echo "armada-guest: ping $PEER fail" > /dev/ttyS0
        fi
    fi
    sleep 1
done
""".replace("@MODULES@", " ".join(NET_MODULES))


def build_net_guest():
    """Returns (kernel, initrd) of the network guest, built once."""
    kernel = os.path.join(CACHE, "vmlinuz-net")
    initrd = os.path.join(CACHE, "initrd-net.cpio")
    if os.path.exists(kernel) and os.path.exists(initrd):
        return kernel, initrd
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
                if f.endswith(".ko") and f[:-3] in NET_MODULES:
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        mods[f[:-3]] = fh.read()
        missing = [m for m in NET_MODULES if m not in mods and m != "virtio_pci_legacy_dev"]
        if missing:
            raise GuestUnavailable(f"{kpkg} lacks the modules {missing}")
        broot = os.path.join(tmp, "b")
        _run(["dpkg-deb", "-x", _download("busybox-static", tmp), broot])
        with open(os.path.join(broot, "bin", "busybox"), "rb") as f:
            busybox = f.read()
        entries = [("bin", 0o755, None), ("dev", 0o755, None), ("proc", 0o755, None), ("sys", 0o755, None),
                   ("lib", 0o755, None), ("lib/modules", 0o755, None),
                   ("bin/busybox", 0o755, busybox), ("bin/sh", 0, "busybox"), ("init", 0o755, NET_INIT.encode())]
        entries += [(f"lib/modules/{m}.ko", 0o644, d) for m, d in mods.items()]
        _cpio_newc(entries, initrd + ".tmp")
        with open(os.path.join(kroot, "boot", vm[0]), "rb") as src, open(kernel + ".tmp", "wb") as dst:
            dst.write(src.read())
        os.replace(kernel + ".tmp", kernel)
        os.replace(initrd + ".tmp", initrd)
    return kernel, initrd


def net_guest_xml(name, kernel, initrd, addr, peer, console_log, memory_mib=128):
    """Domain XML for the network guest under TCG, without a NIC (Armada adds
    it): addr "A.B.C.D/24" for its eth0, peer the address it pings. With
    ACPI, as Armada's own domains: PCI hotplug on the 'pc' machine needs it."""
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mib}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet armada.addr={addr} armada.peer={peer}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <serial type='file'><source path='{console_log}' append='on'/><target port='0'/></serial>
    <memballoon model='none'/>
  </devices>
</domain>
"""
