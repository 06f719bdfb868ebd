"""Known-answer tests of the training-cost accounting (benchmark TSVs, sidecars, safetensors headers)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from clipvqd.evaluation.compute import (ComputeCostError, TrainingStage, benchmark_seconds, methods_training_cost,
                                        parameter_count, stage_cpu_seconds, training_cost)

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _stage(tmp_path, name, cpu, wall, step, batch, shapes, shared=False):
    (tmp_path / f"{name}.tsv").write_text(HEADER + f"{wall}\t0:00:01\t1\t1\t1\t1\t0\t0\t1\t{cpu}\n")
    (tmp_path / f"{name}.json").write_text(json.dumps({"step": step, "train_config": {"batch_size": batch}}))
    save_file({f"w{i}": torch.zeros(shape) for i, shape in enumerate(shapes)}, str(tmp_path / f"{name}.safetensors"))
    return TrainingStage(name, tmp_path / f"{name}.tsv", tmp_path / f"{name}.json", tmp_path / f"{name}.safetensors",
                         shared)


def test_stages_add_up_and_the_sampled_model_gives_the_parameters(tmp_path):
    tokenizer = _stage(tmp_path, "tokenizer", 100.0, 120.0, 2000, 16, [(3, 4), (5,)], shared=True)
    pretrain = _stage(tmp_path, "pretrain", 200.5, 210.0, 1600, 16, [(10, 10), (7,)])
    finetune = _stage(tmp_path, "finetune", 30.0, 31.0, 300, 8, [(10, 10), (7,)])
    cost = training_cost([tokenizer, pretrain, finetune])
    assert cost["cpu_s"] == pytest.approx(330.5) and cost["wall_s"] == pytest.approx(361.0)
    assert cost["steps"] == 3900 and cost["examples"] == 2000 * 16 + 1600 * 16 + 300 * 8
    assert cost["parameters"] == 107
    assert [row["shared"] for row in cost["stages"]] == [True, False, False]
    assert cost["stages"][0]["parameters"] == 17


def test_benchmark_repeats_are_averaged(tmp_path):
    path = tmp_path / "b.tsv"
    path.write_text(HEADER + "10\tx\t1\t1\t1\t1\t0\t0\t1\t4\n" + "20\tx\t1\t1\t1\t1\t0\t0\t1\t6\n")
    assert benchmark_seconds(path) == (5.0, 15.0)


def test_bad_files_are_named(tmp_path):
    stage = _stage(tmp_path, "a", 1, 1, 1, 1, [(2,)])
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(ComputeCostError, match="a.json records no step"):
        training_cost([stage])
    (tmp_path / "bad.tsv").write_text("s\tother\n1\t2\n")
    with pytest.raises(ComputeCostError, match="bad.tsv has no numeric"):
        benchmark_seconds(tmp_path / "bad.tsv")
    (tmp_path / "x.safetensors").write_bytes(b"not a file")
    with pytest.raises(ComputeCostError, match="x.safetensors is not a safetensors file"):
        parameter_count(tmp_path / "x.safetensors")
    with pytest.raises(ComputeCostError, match="lacks its benchmark"):
        methods_training_cost({"m": [{"s": {"sidecar": "b"}}]})


def test_seeds_are_averaged_and_a_stage_without_weights_counts_its_time(tmp_path):
    one = _stage(tmp_path, "one", 10.0, 11.0, 100, 4, [(6,)])
    two = _stage(tmp_path, "two", 30.0, 33.0, 100, 4, [(6,)])
    (tmp_path / "latents.tsv").write_text(HEADER + "5\tx\t1\t1\t1\t1\t0\t0\t1\t2\n")
    spec = {"m": [{"gen": {"benchmark": one.benchmark, "sidecar": one.sidecar, "weights": one.weights},
                   "latents": {"benchmark": tmp_path / "latents.tsv"}},
                  {"gen": {"benchmark": two.benchmark, "sidecar": two.sidecar, "weights": two.weights},
                   "latents": {"benchmark": tmp_path / "latents.tsv"}}]}
    cost = methods_training_cost(spec)["m"]
    assert cost["seeds"] == 2 and cost["cpu_s_per_seed"] == [12.0, 32.0] and cost["cpu_s"] == pytest.approx(22.0)
    assert cost["parameters"] == 6 and cost["examples"] == 400
    spec["m"][0]["latents"] |= {"sampled": True}  # no weights: ignored
    spec["m"][0]["gen"] |= {"sampled": True}
    spec["m"][0]["prior"] = {"benchmark": one.benchmark, "sidecar": one.sidecar, "weights": one.weights,
                             "sampled": True}
    assert methods_training_cost({"m": spec["m"][:1]})["m"]["parameters"] == 12  # generator and prior


def test_a_trainers_own_cpu_record_beats_the_benchmark_sample(tmp_path):
    """Snakemake samples a job's CPU time every 30 s after its first 15 s, so a 22 CPU-s job's benchmark reads 15:
    the sidecar's cpu_s is counted where there is one, the benchmark file only where there is none."""
    recorded = _stage(tmp_path, "finetune", 15.0, 23.0, 300, 8, [(4,)])
    meta = json.loads(recorded.sidecar.read_text())
    recorded.sidecar.write_text(json.dumps(meta | {"cpu_s": 22.1}))
    older = _stage(tmp_path, "tokenizer", 221.0, 240.0, 2000, 16, [(4,)])  # a sidecar without cpu_s
    pairs = TrainingStage("latent pairs", tmp_path / "finetune.tsv")  # no sidecar at all
    cost = training_cost([older, recorded, pairs])
    assert [(row["cpu_s"], row["cpu_source"]) for row in cost["stages"]] == [
        (221.0, "benchmark"), (22.1, "sidecar"), (15.0, "benchmark")]
    assert cost["cpu_s"] == pytest.approx(221.0 + 22.1 + 15.0)
    assert cost["wall_s"] == pytest.approx(240.0 + 23.0 + 23.0)  # wall time always from the benchmark files
    assert stage_cpu_seconds(None, recorded.sidecar) == (22.1, "sidecar")
    recorded.sidecar.write_text(json.dumps(meta | {"cpu_s": "lots"}))
    with pytest.raises(ComputeCostError, match="finetune.json: cpu_s is not a number"):
        training_cost([recorded])
    with pytest.raises(ComputeCostError, match="neither a cpu_s record"):
        stage_cpu_seconds(None, older.sidecar)


def test_the_report_shows_each_rivals_budget_as_a_ratio_to_clip_vqdiffusions():
    """The headline's budget is equal training CPU-seconds: the report prints each other method's spend beside
    its CPU-seconds as a ratio to CLIP-VQDiffusion's (known answer: 300 / 354 = 0.85)."""
    from clipvqd.report.render import _add_training_cost

    costs = {method: {"cpu_s": cpu, "examples": 1, "parameters": 1, "stages": []}
             for method, cpu in (("clip-vqdiffusion", 354.0), ("clip2latent", 300.0), ("lafite", 328.5))}
    table = {"rows": [{"method": "clip-vqdiffusion"}, {"method": "clip2latent"}, {"method": "lafite"},
                      {"method": "unknown"}]}
    _add_training_cost(table, costs)
    assert [row["cost"] and row["cost"]["ratio"] for row in table["rows"]] == [None, "0.85×", "0.93×", None]
    _add_training_cost(table, {"lafite": costs["lafite"]})  # no CLIP-VQDiffusion to compare with: no ratio
    assert table["rows"][2]["cost"]["ratio"] is None and table["rows"][2]["cost"]["cpu"] == "328"
