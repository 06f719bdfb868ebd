"""benchmarks/compare_variants.py: the paired comparison behind the defaults re-chosen on validation prompts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_variants.py"


def _script():
    spec = importlib.util.spec_from_file_location("compare_variants", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _branch(folder: Path, name: str, shift: float, spread: float) -> str:
    """A branch as a metrics job writes it: 40 prompts whose attr_acc is a shared prompt difficulty plus
    `shift`, and 60 distribution images = the reference plus `spread` noise."""
    from clipvqd.evaluation.uncertainty import DistributionFeatures, write_units

    rng = np.random.default_rng(0)
    difficulty = np.random.default_rng(42).uniform(0.2, 0.7, size=40)
    rows = [{"seed": 0, "metric": "attr_acc", "unit": f"p{i:04d}",
             "numerator": 8 * min(1.0, d + shift + 0.01 * rng.normal()), "denominator": 8.0, "n": 4}
            for i, d in enumerate(difficulty)]
    write_units(pd.DataFrame(rows), folder / f"{name}.units.csv")
    reference = torch.nn.functional.normalize(torch.randn(60, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    generated = reference + spread * torch.randn(60, 8, generator=torch.Generator().manual_seed(2))
    DistributionFeatures([f"d{i:06d}" for i in range(60)],
                         {space: {"reference": reference, "generated": {0: generated}} for space in ("fid", "clip")}
                         ).write(folder / f"{name}.features.safetensors")
    value = sum(r["numerator"] for r in rows) / sum(r["denominator"] for r in rows)
    pd.DataFrame([{"metric": "attr_acc", "value": value, "ci_low": value - 0.01, "ci_high": value + 0.01}]
                 ).to_csv(folder / f"{name}.csv", index=False)
    return str(folder / name)


def test_a_better_candidate_is_favoured_on_each_metric_and_a_branch_equals_itself(tmp_path):
    script = _script()
    settings = script.BootstrapSettings(300, 0.95, 0)
    reference = _branch(tmp_path, "default", shift=0.0, spread=0.05)
    candidate = _branch(tmp_path, "steps=10", shift=0.05, spread=0.5)  # more accurate, further from the reference
    table = script.compare(reference, [candidate, reference], ["attr_acc", "fid"], settings).set_index(
        ["candidate", "metric"])
    assert table.loc[(candidate, "attr_acc"), "favours"] == "candidate"
    assert table.loc[(candidate, "attr_acc"), "difference"] > 0.04
    assert table.loc[(candidate, "fid"), "favours"] == "reference"  # lower FID is better: the reference's
    assert table.loc[(reference, "attr_acc"), "favours"] == "neither"
    assert table.loc[(reference, "attr_acc"), "difference"] == 0
    assert table.loc[(candidate, "fid"), "candidate_value"] == "not measured"  # not in its metrics table


def test_a_missing_branch_file_is_named(tmp_path):
    script = _script()
    reference = _branch(tmp_path, "default", shift=0.0, spread=0.05)
    try:
        script.compare(reference, [str(tmp_path / "nothing")], ["attr_acc"], script.BootstrapSettings(50, 0.95, 0))
    except SystemExit as error:
        assert "nothing.csv does not exist" in str(error)
    else:
        raise AssertionError("a missing branch must be refused")
