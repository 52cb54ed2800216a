"""The CPU kind recorded beside every result: parsed from /proc/cpuinfo's first processor."""

from __future__ import annotations

import platform

from stark.rundir.provenance import cpu_kind, versions

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
flags\t\t: fpu sse2 avx2 fma bmi2

processor\t: 1
model name\t: Some Other CPU
flags\t\t: avx512f
"""

ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm sve i8mm
CPU implementer\t: 0x41
CPU part\t: 0xd40
"""


def test_cpu_kind_reads_the_first_processor():
    assert cpu_kind(X86) == "AMD EPYC family 25 model 1 stepping 1 (avx2 fma)"


def test_cpu_kind_without_model_name_or_cpuinfo_falls_back_to_the_platform():
    fallback = platform.processor() or platform.machine() or "unknown"
    assert cpu_kind(ARM) == f"{fallback} implementer 0x41 part 0xd40 (asimd sve i8mm)"
    assert cpu_kind("") == fallback


def test_versions_name_the_cpu_kind():
    assert versions()["cpu"] == cpu_kind()
