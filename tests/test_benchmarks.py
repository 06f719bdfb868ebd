"""Smoke test of the benchmark scripts (benchmarks/): the CPU diffusion benchmark runs end to end on a
tiny model and writes the JSON the README describes. It checks shapes, not speeds."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, arguments: list[str], out: Path, timeout: int) -> dict:
    """Run benchmarks/<script> on one thread with `arguments` and return the JSON it wrote to `out`."""
    command = [sys.executable, str(REPO / "benchmarks" / script), *arguments, "--out", str(out)]
    result = subprocess.run(command, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_diffusion_cpu_benchmark_writes_its_json(tmp_path):
    payload = run_benchmark("diffusion_cpu.py", [
        "--num-codes", "16", "--grid", "8", "--condition-dim", "16", "--hidden-dim", "32", "--num-layers", "1",
        "--num-heads", "2", "--train-batch", "2", "--train-warmup", "1", "--train-steps", "2",
        "--sample-images", "2", "--sample-batch", "2", "--sample-steps", "4,2", "--forward-repeats", "1",
        "--threads", "1"], tmp_path / "diffusion_cpu.json", timeout=120)

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


def test_diffusion_gpu_benchmark_runs_its_cpu_smoke_path(tmp_path):
    """The GPU script's --quick path on CPU: every configuration at two batch sizes, ratios within a batch."""
    payload = run_benchmark("diffusion_gpu.py", [
        "--quick", "--no-compile", "--train-batch", "2,4", "--train-steps", "1", "--warmup-steps", "1",
        "--sample-steps", "2", "--profile", "bf16_sdpa_fused"], tmp_path / "diffusion_gpu.json", timeout=180)
    assert payload["complete"] is True

    runs = payload["training"]
    assert [(r["config"], r["batch"]) for r in runs] == [
        (name, batch) for batch in (2, 4)
        for name in ("fp32_eager", "fp32_eager_tf32_convs", "bf16_sdpa_fused", "bf16_sdpa_fused_cudnn_benchmark")]
    assert all(r["ok"] and r["steps_per_s"] > 0 for r in runs)
    # Each batch's ratios are against that batch's own float32 runs.
    for r in runs:
        if r["config"] == "fp32_eager":
            assert r["speedup_vs_fp32_eager"] == 1.0
        if r["config"] == "fp32_eager_tf32_convs":
            assert r["speedup_vs_fp32_tf32_convs"] == 1.0
    assert [b["batch"] for b in payload["by_batch"]] == [2, 4]
    assert all(b["best_config"].startswith("bf16") for b in payload["by_batch"])
    assert all(isinstance(b["target_3x_fp32_eager_met"], bool) for b in payload["by_batch"])
    profiled = [r for r in runs if "top_kernels" in r]
    assert [r["config"] for r in profiled] == ["bf16_sdpa_fused", "bf16_sdpa_fused"]

    sampling = payload["sampling"]
    assert sampling["cfg_batching"] == {"forward_rows_per_guided_step": [8], "batched": True}
    assert all(r["ok"] for r in sampling["runs"])


def test_train_steps_cpu_benchmark_quick_path(tmp_path):
    """Old and new forms of the trainer and sampler steps run alternately, and end bit-identical."""
    payload = run_benchmark("train_steps_cpu.py", ["--quick"], tmp_path / "train_steps_cpu.json", timeout=180)
    assert payload["environment"]["torch_threads"] == 1 and isinstance(payload["environment"]["contended"], bool)
    assert set(payload["diffusion_train"]) == {"language_free", "paired_cfg_finetune"}
    for section in [*payload["diffusion_train"].values(), payload["diffusion_sample"]]:
        assert section["bit_identical"] is True, section["sha256"]
        assert len(section["cpu_s"]["old"]) == len(section["cpu_s"]["new"]) == 2
        assert section["new_over_old_cpu"]["median"] > 0
    train = payload["diffusion_train"]["language_free"]["sha256"]
    assert train["old"] == train["new"] and set(train["old"]) == {"weights", "ema", "timestep_sampler"}
    assert "imports" not in payload  # --quick leaves out the subprocess timing


def test_paper_steps_gpu_smoke_run_on_cpu(tmp_path):
    """The paper-scale GPU script's --smoke path on CPU, at the world default's small shapes (config.yaml alone;
    the paper shapes take minutes on a CPU): every stage runs through the library's own trainers and inference
    paths and leaves a rate, so the GPU run cannot fail on a stage this path never reached."""
    payload = run_benchmark("paper_steps_gpu.py", ["--smoke", "--config", "config.yaml"],
                            tmp_path / "paper_steps.json", timeout=300)
    assert payload["complete"] is True
    failed = {name: entry["error"] for name, entry in payload["stages"].items() if not entry["ok"]}
    assert not failed
    assert set(payload["rates"]) == {
        "clip_conditioner_image", "clip_conditioner_text", "judge_image", "tokenizer_step", "tokenizer_step_no_disc",
        "tokenizer_encode_image", "tokenizer_decode_image", "diffusion_step@2", "denoiser_sample_step_guided",
        "denoiser_sample_step", "lafite_step", "lafite_image", "stylegan2_step", "clip2latent_pair", "prior_step",
        "clip2latent_image", "inception_image"}
    assert all(rate["seconds"] > 0 and rate["basis"] == "smoke run (not a measurement)" for rate in payload["rates"].values())
    assert payload["stages"]["lafite_train"]["timed_steps"] == 1
