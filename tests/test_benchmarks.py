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


def test_trainer_steps_benchmark_quick_path(tmp_path):
    """Form A and form B of three trainers' steps at tiny sizes, alternating, with a profile: a form that only
    changes how the numbers are laid out in memory or which rows the optimiser holds ends bit-identical, one
    that changes the kernels ends within rounding at the first step, and a trainer without the knobs is
    skipped."""
    payload = run_benchmark("trainer_steps.py", [
        "--quick", "--profile", "--trainers", "lafite,clip_judge,prior",
        "--a", "modulated_conv=grouped,discriminator_downsample=pool,vocabulary_rows=all",
        "--b", "modulated_conv=scaled,discriminator_downsample=strided,vocabulary_rows=used"],
        tmp_path / "trainer_steps.json", timeout=180)
    env = payload["environment"]
    assert env["torch_threads"] == 1 and isinstance(env["contended"], bool) and env["loadavg_start"]
    trainers = payload["trainers"]
    assert set(trainers) == {"lafite", "clip_judge", "prior"}
    assert "skipped" in trainers["prior"]  # it has none of the knobs
    for name in ("lafite", "clip_judge"):
        comparison, profile = trainers[name]["comparison"], trainers[name]["profile"]
        assert comparison["rounds"] == 2 and len(comparison["cpu_s"]["A"]) == len(comparison["cpu_s"]["B"]) == 2
        assert comparison["b_over_a_cpu"]["median"] > 0 and comparison["b_over_a_cpu"]["consistent"] is None
        assert comparison["b_over_a_cpu"]["rounds_below_1"] in (0, 1, 2)
        assert comparison["job_steps"] > 0 and comparison["projected_job_b_over_a"] > 0
        assert profile["top_ops"] and abs(sum(profile["families"].values()) - 1) < 0.01
    # The judge's used-rows optimiser saves the whole table's weights; LAFITE's new kernels round differently.
    assert trainers["clip_judge"]["comparison"]["bit_identical"] is True
    assert trainers["clip_judge"]["comparison"]["max_abs_loss_difference"] == 0
    assert trainers["clip_judge"]["ignored_knobs"] == ["discriminator_downsample", "modulated_conv"]
    lafite = trainers["lafite"]["comparison"]
    assert lafite["forms"]["B"]["modulated_conv"] == "scaled" and lafite["forms"]["A"]["discriminator_downsample"] == "pool"
    # Not bit-identical, but the first step's losses agree to rounding (magnified a little by Adam, whose first
    # update is about +-lr whatever the gradient's size, so a gradient that is mostly rounding flips it).
    assert lafite["bit_identical"] is False
    assert 0 < lafite["first_step_loss_difference"] < 1e-2 * abs(lafite["mean_loss"]["A"])


def test_gan_forms_curves_compares_the_committed_curves(tmp_path):
    """The curve comparison on the measured curves (copied, so nothing under benchmarks/ is rewritten): every
    pair of the table is there, and two curves of one run against themselves would differ by zero."""
    import shutil

    source = REPO / "benchmarks" / "measured" / "gan-forms-curves-2026-11-29"
    shutil.copytree(source, tmp_path / "curves")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gan_forms_curves.py"), "--compare-only",
                             "--out-dir", str(tmp_path / "curves")], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    comparison = json.loads((tmp_path / "curves" / "comparison.json").read_text())
    assert comparison == json.loads((source / "comparison.json").read_text())
    for trainer in ("lafite", "stylegan2"):
        pairs = comparison[trainer]["mean_abs_difference"]
        assert len(pairs) == 4 and all(value >= 0 for pair in pairs.values() for value in pair.values())
        assert comparison[trainer]["runs"]["new-s0"]["forms"]["modulated_conv"] == "scaled"
        assert comparison[trainer]["runs"]["old-s0"]["forms"]["modulated_conv"] == "grouped"
