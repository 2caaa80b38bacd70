"""A base disk image that boots and then costs nothing: its MBR is
"cli; hlt; jmp $-3", so SeaBIOS hands over and the vCPU halts for good. A
hundred such TCG guests fit on two CPUs (a guest that finds no boot device
keeps SeaBIOS busy at ~10% of a CPU each)."""
import os
import subprocess

MBR = bytes([0xFA, 0xF4, 0xEB, 0xFD]).ljust(510, b"\0") + b"\x55\xaa"


def make_halting_base(path, virtual_gib=1, data_mib=0):
    """Writes a qcow2 image at path: the halting MBR, then data_mib MiB of
    data (what a full copy must copy)."""
    raw = path + ".raw.tmp"
    try:
        with open(raw, "wb") as f:
            f.truncate(virtual_gib << 30)
            f.write(MBR)
            f.seek(1 << 20)
            chunk = bytes([0xA5]) * (1 << 20)
            for _ in range(data_mib):
                f.write(chunk)
        subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path], check=True)
    finally:
        if os.path.exists(raw):
            os.unlink(raw)
    return path


def mem_available_mib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 0
