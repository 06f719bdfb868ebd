"""Smoke test of the benchmark scripts (benchmarks/): the CPU diffusion benchmark runs end to end on a
tiny model and writes the JSON the README describes. It checks shapes, not speeds."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_diffusion_cpu_benchmark_writes_its_json(tmp_path):
    out = tmp_path / "diffusion_cpu.json"
    command = [
        sys.executable, str(REPO / "benchmarks" / "diffusion_cpu.py"),
        "--num-codes", "16", "--grid", "8", "--condition-dim", "16", "--hidden-dim", "32", "--num-layers", "1",
        "--num-heads", "2", "--train-batch", "2", "--train-warmup", "1", "--train-steps", "2",
        "--sample-images", "2", "--sample-batch", "2", "--sample-steps", "4,2", "--forward-repeats", "1",
        "--threads", "1", "--out", str(out),
    ]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(out.read_text())

    env = payload["environment"]
    assert env["device"] == "cpu" and env["torch_threads"] == 1 and env["torch"]
    assert isinstance(env["contended"], bool)
    assert payload["model"]["grid_height"] == 8 and payload["model"]["num_codes"] == 16

    training = payload["training"]
    for part in ("trainer", "core_step"):
        assert training[part]["steps_per_s"] > 0 and training[part]["tokens_per_s"] > 0
        assert training[part]["timed_steps"] == 2
    assert training["ratios"]["trainer_over_core"] > 0

    sampling = payload["sampling"]
    assert [(r["guidance_scale"], r["num_steps"]) for r in sampling["runs"]] == [(1.2, 4), (1.2, 2), (1.0, 4)]
    assert all(r["images_per_s"] > 0 for r in sampling["runs"])
    assert set(sampling["ratios"]["step_speedup_vs_reference"]) == {"4", "2"}
    assert sampling["ratios"]["step_speedup_vs_reference"]["4"] == 1.0
    assert sampling["ratios"]["guidance_time_over_s1"] > 0
    # A guided reverse step is one forward of the conditional and null rows together.
    assert sampling["cfg_batching"] == {"forward_rows_per_guided_step": [4], "batched": True}
