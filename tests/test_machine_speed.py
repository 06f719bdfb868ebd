"""Machine-speed calibration (clipvqd/machine_speed.py, `python -m clipvqd calibrate`): the workload is timed
and recorded, its line read against the README's reference, and the report states both."""

from __future__ import annotations

import json

import pytest

from clipvqd.cli import main
from clipvqd.machine_speed import (
    WORKLOAD_VERSION,
    CalibrationError,
    calibrate,
    design_entry,
    report_sentence,
    summary_line,
)


@pytest.fixture(scope="module")
def record():
    return calibrate(repeats=2)


def test_calibration_times_every_part_of_the_workload(record):
    assert record["seconds"] > 0 and record["cpu_seconds"] > 0
    assert set(record["parts"]) == {"matmul", "conv", "small_ops"}
    assert all(part["seconds"] > 0 and part["cpu_seconds"] > 0 for part in record["parts"].values())
    assert len(record["all_seconds"]) == len(record["all_cpu_seconds"]) == record["repeats"] == 2
    assert min(record["all_seconds"]) <= record["seconds"] <= max(record["all_seconds"])
    # One thread: the process cannot get more than one core's time (a little slack for the clocks).
    assert 0 < record["cpu_share"] <= 1.2
    assert record["workload"]["version"] == WORKLOAD_VERSION and record["workload"]["threads"] == 1
    assert record["machine"]["logical_cpus"] >= 1 and record["machine"]["torch"]
    with pytest.raises(CalibrationError, match="at least 1"):
        calibrate(repeats=0)


def test_the_line_reads_this_machine_against_the_readme(record):
    assert "no reference recorded" in summary_line(record, reference={})
    reference = {"cpu_seconds": record["cpu_seconds"] / 2, "workload_version": WORKLOAD_VERSION}
    line = summary_line(record, reference=reference)
    assert f"{record['cpu_seconds']:.2f} CPU-s per repeat" in line and "expect about 2.00x" in line
    other = summary_line(record, reference={"cpu_seconds": 1.0, "workload_version": WORKLOAD_VERSION + 1})
    assert "not comparable" in other
    entry = design_entry(record) | {"readme_reference": reference}
    sentence = report_sentence(entry)
    assert sentence.startswith(f"This machine: calibration {record['cpu_seconds']:.2f} CPU-s")
    assert "expect about 2.00x" in sentence and report_sentence(None) is None


def test_command_prints_the_line_and_writes_the_record(tmp_path, capsys):
    out = tmp_path / "calibration.json"
    main(["calibrate", "--repeats", "1", "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["repeats"] == 1 and written["cpu_seconds"] > 0
    assert capsys.readouterr().out.startswith(f"machine-speed calibration: {written['cpu_seconds']:.2f} CPU-s")


def test_report_refuses_an_incomplete_calibration(tmp_path):
    from clipvqd.report import ReportError
    from clipvqd.report.inputs import read_machine_speed

    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"seconds": 1.0}))
    with pytest.raises(ReportError, match="lacks cpu_seconds, cpu_share, repeats, workload"):
        read_machine_speed(path)
