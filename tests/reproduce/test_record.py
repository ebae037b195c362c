"""What a reproduction records about its machine and commit."""
import re
from pathlib import Path

from pyfacex.reproduce.record import cpu_model, git_commit, run_record


def test_cpu_model_is_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6230 @ 2.10GHz\n")
    assert cpu_model(info) == "Intel(R) Xeon(R) Gold 6230 @ 2.10GHz"


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(tmp_path) is None


def test_run_record_names_the_command_and_the_machine():
    record = run_record("pyfacex reproduce lgaf --quick")
    assert record["command"] == "pyfacex reproduce lgaf --quick"
    assert record["machine"]["threads"] >= 1 and record["machine"]["torch"]
    package = Path(__import__("pyfacex").__file__).parent
    if git_commit(package) is not None:   # an installed wheel has no checkout
        assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["commit"])
