"""The CPU class a figure was measured on: vendor, family, model and name from /proc/cpuinfo, and the CPU count.

Every timing bench prints `cpu_class()` on its first line, so each figure in bench/RESULTS.md names its class
(issue 24: the same step ran at 0.97x PyTorch on AMD Zen 4 and 0.47x on an Intel Xeon).
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

FIELDS = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "model name": "name"}


def cpu_fields(cpuinfo: str | None = None) -> dict:
    """{"vendor", "family", "model", "name"} of the first processor in /proc/cpuinfo (empty where there is none)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    out = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in FIELDS and FIELDS[key.strip()] not in out:
            out[FIELDS[key.strip()]] = value.strip()
        if not line.strip() and out:  # the end of the first processor's block
            break
    return out


def cpu_class(cpuinfo: str | None = None) -> str:
    """E.g. "CPU: GenuineIntel family 6 model 167 (Intel(R) Xeon(R) Processor), 2 CPUs"."""
    f = cpu_fields(cpuinfo)
    if not f:
        return f"CPU: {platform.processor() or platform.machine()} (no /proc/cpuinfo), {os.cpu_count()} CPUs"
    return (f"CPU: {f.get('vendor', '?')} family {f.get('family', '?')} model {f.get('model', '?')} "
            f"({f.get('name', '?')}), {os.cpu_count()} CPUs")


if __name__ == "__main__":
    print(cpu_class())
