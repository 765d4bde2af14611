"""bench/cpu_class.py: the first line of every timing bench names the CPU's vendor, family and model."""
import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))
from cpu_class import cpu_class, cpu_fields  # noqa: E402

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 167
model name\t: Intel(R) Xeon(R) Processor
stepping\t: 1

processor\t: 1
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 999
model name\t: another
"""
AMD = "vendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC 9R14\n"


def test_cpu_class_names_vendor_family_and_model_of_the_first_processor():
    assert cpu_fields(INTEL) == {"vendor": "GenuineIntel", "family": "6", "model": "167",
                                 "name": "Intel(R) Xeon(R) Processor"}
    assert cpu_class(AMD).startswith("CPU: AuthenticAMD family 25 model 17 (AMD EPYC 9R14), ")
    assert "no /proc/cpuinfo" in cpu_class("")
