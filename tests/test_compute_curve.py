"""Known-answer tests of the quality-versus-compute points (clipvqd.evaluation.compute_curve) and their figure."""

import json

import pandas as pd
import pytest

from clipvqd.evaluation.compute import ComputeCostError
from clipvqd.evaluation.compute_curve import curve_points, point_cost, stage_cpu_seconds
from clipvqd.report.compute_curve import compute_curve_figure, compute_curve_rows

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _benchmark(path, cpu):
    path.write_text(HEADER + f"1.0\t0:00:01\t1\t1\t1\t1\t0\t0\t1\t{cpu}\n")
    return path


def _sidecar(path, step, cpu=None):
    path.write_text(json.dumps({"step": step, **({} if cpu is None else {"cpu_s": cpu})}))
    return path


def _table(path, method, variant, values):
    rows = [{"method": method, "variant": variant, "metric": metric, "value": value, "n": 10,
             "ci_low": value - 0.01, "ci_high": value + 0.01, "protocol": "p-1"} for metric, value in values.items()]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_stage_costs_its_own_record_else_its_benchmark(tmp_path):
    bench = _benchmark(tmp_path / "b.tsv", 500.0)  # the whole run's benchmark
    assert stage_cpu_seconds("s", {"benchmark": bench, "sidecar": _sidecar(tmp_path / "m.json", 3, 12.5)}) == (12.5, 3)
    assert stage_cpu_seconds("s", {"benchmark": bench, "sidecar": _sidecar(tmp_path / "o.json", 9)}) == (500.0, 9)
    assert stage_cpu_seconds("pairs", {"benchmark": bench}) == (500.0, 0)
    with pytest.raises(ComputeCostError, match="snapshot sidecar .*o.json records no cpu_s"):
        stage_cpu_seconds("s", {"benchmark": bench, "sidecar": tmp_path / "o.json", "milestone": True})
    with pytest.raises(ComputeCostError, match="sidecar .*missing.json"):
        stage_cpu_seconds("s", {"sidecar": tmp_path / "missing.json"})


def test_points_add_stages_average_seeds_and_read_the_metrics(tmp_path):
    tokenizer = {"benchmark": _benchmark(tmp_path / "tok.tsv", 100.0), "sidecar": _sidecar(tmp_path / "tok.json", 50)}
    seeds = [{"tokenizer": tokenizer, "pretrain": {"sidecar": _sidecar(tmp_path / f"p{s}.json", 8, cpu),
                                                   "milestone": True}}
             for s, cpu in ((0, 20.0), (1, 40.0))]
    assert point_cost(seeds) == {"cpu_s": 130.0, "steps": 58.0, "seeds": 2, "cpu_s_per_seed": [120.0, 140.0]}
    whole = [{"tokenizer": tokenizer, "pretrain": {"sidecar": _sidecar(tmp_path / "f.json", 16, 80.0)}}]
    spec = {"lafite": [{"fraction": 1.0, "table": _table(tmp_path / "d.csv", "lafite", "default",
                                                          {"attr_acc": 0.8, "clipscore_judge_mean": 0.3, "cmmd": 1.0}),
                        "stages": whole},
                       {"fraction": 0.5, "table": _table(tmp_path / "h.csv", "lafite", "budget=0.5",
                                                          {"attr_acc": 0.6, "cmmd": 2.0}), "stages": seeds}]}
    points = curve_points(spec)
    assert list(points["fraction"]) == [0.5, 1.0]  # in budget order
    half, full = points.to_dict("records")
    assert half["cpu_s"] == 130.0 and full["cpu_s"] == 180.0 and half["variant"] == "budget=0.5"
    assert half["attr_acc"] == 0.6 and half["attr_acc_ci_low"] == pytest.approx(0.59)
    assert pd.isna(half["clipscore_judge_mean"])  # not measured: a gap, not a zero
    rows = compute_curve_rows(points)
    assert rows[0]["cpu"] == "130" and rows[0]["clipscore_judge_mean"] == "—"
    assert rows[1]["attr_acc"] == "0.800 [0.790, 0.810]"
    drawn = compute_curve_figure(points, tmp_path)
    assert drawn.path == "figures/compute-curve.png" and (tmp_path / drawn.path).stat().st_size > 0
    assert compute_curve_figure(points.iloc[0:0], tmp_path) is None
    with pytest.raises(ComputeCostError, match="fraction repeated"):
        curve_points({"lafite": [spec["lafite"][0], spec["lafite"][0]]})
