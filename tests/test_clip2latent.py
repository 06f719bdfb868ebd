"""clip2latent: schedule and posterior known answers, prior shapes and CFG dropout, embedding noise, an
overfit, deterministic samplers, exact resume, the unconditional generator, the CLI chain on a tiny world,
and the config block <-> library dataclasses."""

import copy
import dataclasses
import json
import math

import pytest
import torch
import yaml
from safetensors.torch import load_file
from snakemake.utils import validate

from clipvqd.clip2latent.conditioning import add_embedding_noise, keep_mask
from clipvqd.clip2latent.config import (GeneratorModelConfig, GeneratorTrainConfig, PairsConfig, PriorModelConfig,
                                        PriorSamplingConfig, PriorTrainConfig)
from clipvqd.clip2latent.network import PriorNetwork
from clipvqd.clip2latent.prior import DiffusionPrior
from clipvqd.clip2latent.schedule import GaussianSchedule, cosine_betas
from clipvqd.clip2latent.train import load_prior, train_prior
from clipvqd.training import generator_for
from conftest import REPO

pytestmark = pytest.mark.usefixtures("single_thread")

LATENT, EMBED = 6, 10
MODEL = PriorModelConfig(latent_dim=LATENT, embed_dim=EMBED, dim=32, depth=2, heads=2, dim_head=16, timesteps=100)
TRAIN = PriorTrainConfig(steps=6, batch_size=4, snapshot_every=3, log_every=3, ema_decay=0.9)


def _pairs(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, LATENT, generator=g) * 2 + 1
    e = torch.nn.functional.normalize(torch.randn(n, EMBED, generator=g), dim=1)
    return {"w": w, "embeddings": e, "w_mean": w.mean(0), "w_std": w.std(0), "embed_mean": e.mean(0),
            "embed_std": e.std(0)}


# ---- schedule -----------------------------------------------------------------------------------------

def test_cosine_schedule_known_answers():
    betas = cosine_betas(1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1 - f(1) / f(0), rel=1e-9)
    assert betas[0].item() == pytest.approx(4.1284e-05, rel=1e-4)
    assert betas[499].item() == pytest.approx(1 - f(500) / f(499), rel=1e-9)
    assert betas[-1].item() == 0.999  # clipped (unclipped it would be 1)
    cumprod = torch.cumprod(1 - betas, 0)
    assert cumprod[499].item() == pytest.approx(f(500) / f(0), rel=1e-9)  # about 0.49
    assert torch.all(cumprod[1:] < cumprod[:-1])


def test_respacing_keeps_the_cumulative_products_at_the_kept_timesteps():
    full = GaussianSchedule.create("cosine", 1000)
    short = full.respaced(10)
    assert short.timesteps.tolist() == list(range(0, 1000, 100))
    assert torch.allclose(short.alphas_cumprod, full.alphas_cumprod[::100], rtol=1e-12)
    with pytest.raises(ValueError, match="divide"):
        full.respaced(7)


def test_full_schedule_variance_keeps_the_respaced_mean_and_the_single_step_noise():
    """The released sampler (set_timestep_skip rewrites the mean coefficients at the kept timesteps but
    not DALLE2-pytorch's posterior_log_variance_clipped): respaced mean, the 1000-step chain's variance
    beta_t (1 - a_bar_{t-1}) / (1 - a_bar_t) at each kept t."""
    full = GaussianSchedule.create("cosine", 1000)
    exact, official = full.respaced(10), full.respaced(10, full_schedule_variance=True)
    x0, x_t = torch.randn(10, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    t = torch.arange(10)
    mean_exact, log_var_exact = exact.posterior(x0, x_t, t)
    mean_official, log_var_official = official.posterior(x0, x_t, t)
    assert torch.equal(mean_exact, mean_official)
    a = full.alphas_cumprod
    for index, kept in enumerate(range(100, 1000, 100), start=1):
        single_step = full.betas[kept] * (1 - a[kept - 1]) / (1 - a[kept])
        assert log_var_official[index, 0].exp().item() == pytest.approx(single_step.item(), rel=1e-9)
        if index >= 2:  # (at index 1 the respaced step ends at t = 0, where 1 - a_bar is about 4e-5)
            assert log_var_official[index, 0] < log_var_exact[index, 0] - 2  # far less noise
    assert PriorSamplingConfig.paper().posterior_variance == "full_schedule"
    with pytest.raises(ValueError, match="posterior_variance"):
        PriorSamplingConfig(posterior_variance="ddim")


def test_augment_policies_match_lafite():
    from clipvqd.clip2latent.config import AUGMENT_POLICIES
    from clipvqd.lafite.config import AUGMENT_POLICIES as LAFITE_POLICIES

    assert AUGMENT_POLICIES == LAFITE_POLICIES
    assert GeneratorTrainConfig(augment=("translation",)).to_lafite().augment == ("translation",)
    with pytest.raises(ValueError, match="augment"):
        GeneratorTrainConfig(augment=("hue",))


@pytest.mark.parametrize("steps", [None, 4])
def test_x0_posterior_equals_the_gaussian_product(steps):
    """q(x_{t-1} | x_t, x0) from N(x_{t-1}; sqrt(a_bar_{t-1}) x0, 1 - a_bar_{t-1}) N(x_t; sqrt(alpha_t) x_{t-1}, beta_t)."""
    schedule = GaussianSchedule.create("cosine", 100)
    if steps:
        schedule = schedule.respaced(steps)
    x0, x_t = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
    for index in range(1, len(schedule)):
        t = torch.full((3,), index)
        mean, log_var = schedule.posterior(x0, x_t, t)
        a_prev, alpha, beta = schedule.alphas_cumprod[index - 1], schedule.alphas[index], schedule.betas[index]
        precision = 1 / (1 - a_prev) + alpha / beta
        expected_mean = (a_prev.sqrt() * x0 / (1 - a_prev) + alpha.sqrt() * x_t / beta) / precision
        assert torch.allclose(mean, expected_mean, atol=1e-10)
        assert torch.allclose(log_var.exp(), (1 / precision).expand_as(log_var), rtol=1e-9)
    # t = 0: the mean is x0 itself (a_bar_{-1} = 1)
    mean, _ = schedule.posterior(x0, x_t, torch.zeros(3, dtype=torch.long))
    assert torch.allclose(mean, x0)


def test_x0_from_noise_inverts_q_sample():
    schedule = GaussianSchedule.create("cosine", 100)
    x0, noise = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0, 10, 50, 99])
    assert torch.allclose(schedule.x0_from_noise(schedule.q_sample(x0, t, noise), t, noise), x0, atol=1e-8)


# ---- network, conditioning ----------------------------------------------------------------------------

def test_prior_network_shapes_and_dropped_condition():
    torch.manual_seed(0)
    net = PriorNetwork(MODEL)
    x, t, e = torch.randn(5, LATENT), torch.randint(0, 100, (5,)), torch.randn(5, EMBED)
    out = net(x, t, e, torch.ones(5, dtype=torch.bool))
    assert out.shape == (5, LATENT)
    # a hidden condition cannot change the output; a visible one does
    hidden = torch.zeros(5, dtype=torch.bool)
    assert torch.allclose(net(x, t, e, hidden), net(x, t, torch.randn(5, EMBED), hidden), atol=1e-6)
    assert not torch.allclose(out, net(x, t, torch.randn(5, EMBED), torch.ones(5, dtype=torch.bool)))
    with pytest.raises(ValueError, match="expected x_t"):
        net(torch.randn(5, LATENT + 1), t, e, hidden)
    paper = PriorNetwork(PriorModelConfig.paper())
    assert isinstance(paper.latent_in, torch.nn.Identity) and isinstance(paper.embed_in, torch.nn.Identity)


def test_cfg_dropout_rate():
    keep = keep_mask(200_000, 0.2, torch.Generator().manual_seed(0))
    assert keep.dtype == torch.bool
    assert 1 - keep.float().mean().item() == pytest.approx(0.2, abs=0.005)
    assert keep_mask(100, 0.0).all() and not keep_mask(100, 1.0).any()


def test_embedding_noise_keeps_the_norm_at_the_official_angle():
    g = torch.Generator().manual_seed(0)
    e = torch.randn(4000, 512, generator=g) * 3
    noisy = add_embedding_noise(e, 1.0, torch.randn(4000, 512, generator=g))
    assert torch.allclose(noisy.norm(dim=1), e.norm(dim=1), rtol=1e-5)
    cos = torch.nn.functional.cosine_similarity(noisy, e).mean().item()
    assert cos == pytest.approx(1 / math.sqrt(2), abs=0.01)
    assert torch.equal(add_embedding_noise(e, 0.0, torch.randn(4000, 512)), e)


# ---- training and sampling ----------------------------------------------------------------------------

def test_prior_overfits_a_tiny_set_of_pairs(tmp_path):
    pairs = _pairs(n=8)
    # No dropout: a dropped row cannot tell which of the 8 targets it is, which would floor the loss.
    cfg = dataclasses.replace(TRAIN, steps=300, batch_size=8, learning_rate=2e-3, embed_noise_scale=0.0,
                              cond_drop_prob=0.0, ema_decay=0.9, snapshot_every=1000, log_every=50)
    model = dataclasses.replace(MODEL, dim=32, depth=2)
    train_prior(pairs, model, cfg, tmp_path / "work", tmp_path / "prior.safetensors", tmp_path / "curve.csv",
                progress=False)
    import pandas as pd

    curve = pd.read_csv(tmp_path / "curve.csv")
    assert curve["loss"].iloc[-1] < 0.2 * curve["loss"].iloc[0]
    prior, meta = load_prior(tmp_path / "prior.safetensors")
    assert meta["step"] == 300 and torch.allclose(prior.latent_mean, pairs["w_mean"])
    seeds = [generator_for(0, i) for i in range(8)]
    w = prior.sample(pairs["embeddings"], steps=10, guidance_scale=1.0, seeds=seeds)
    errors = (w - pairs["w"]).norm(dim=1)
    spread = torch.cdist(pairs["w"], pairs["w"]).sum() / (8 * 7)
    assert errors.mean() < 0.25 * spread, (errors, spread)


def test_samplers_are_deterministic_under_a_seed():
    from clipvqd.clip2latent.sample import generate_images, sample_latents
    from clipvqd.lafite.generator import Generator

    torch.manual_seed(0)
    prior = DiffusionPrior(MODEL).eval()
    prior.set_stats(*(_pairs()[k] for k in ("w_mean", "w_std", "embed_mean", "embed_std")))
    embeds = torch.randn(5, EMBED)
    settings = PriorSamplingConfig(steps=5, guidance_scale=2.0, batch_size=2)
    a = sample_latents(prior, embeds, settings, seed=3, progress=False)
    b = sample_latents(prior, embeds, dataclasses.replace(settings, batch_size=5), seed=3, progress=False)
    assert torch.equal(a, b)  # independent of the batching
    assert not torch.allclose(a, sample_latents(prior, embeds, settings, seed=4, progress=False))
    generator = Generator(GeneratorModelConfig(z_dim=8, w_dim=LATENT, mapping_layers=1, channel_base=64,
                                               channel_max=4).to_lafite()).eval()
    images = generate_images(prior, generator, embeds, settings, seed=3, progress=False)
    assert images.dtype == torch.uint8 and images.shape == (5, 3, 32, 32)
    assert torch.equal(images, generate_images(prior, generator, embeds, settings, seed=3, progress=False))


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, kill_after_first_snapshot):
    pairs = _pairs()

    def run(name, cfg=TRAIN):
        out = tmp_path / name / "prior.safetensors"
        train_prior(pairs, MODEL, cfg, tmp_path / name / "work", out, tmp_path / name / "curve.csv", progress=False)
        return out

    straight = run("straight")
    kill_after_first_snapshot(lambda: run("resumed"), match="step 3")
    resumed = run("resumed")
    a, b = load_file(str(straight)), load_file(str(resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    import pandas as pd

    assert list(pd.read_csv(tmp_path / "resumed" / "curve.csv")["step"]) == [3, 6]
    # a changed setting starts over instead of continuing from the old snapshots
    run("resumed", dataclasses.replace(TRAIN, cond_drop_prob=0.5))
    assert json.loads((tmp_path / "resumed" / "prior.json").read_text())["train_config"]["cond_drop_prob"] == 0.5


# ---- the generator and the CLI chain ------------------------------------------------------------------

GEN_PARAMS = {
    "generator_model": {"z_dim": 8, "w_dim": 8, "mapping_layers": 1, "channel_base": 64, "channel_max": 4},
    "generator_train": {"steps": 2, "batch_size": 8, "r1_interval": 2, "snapshot_every": 1, "log_every": 1},
    "pairs": {"count": 40, "batch_size": 16, "stats_count": 40},
    "prior_model": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "timesteps": 20},
    "prior_train": {"steps": 3, "batch_size": 8, "snapshot_every": 2, "log_every": 1},
}


def test_cli_chain_on_a_tiny_world(small_faces, tmp_path):
    from clipvqd.clip.embed import embed_text_column
    from clipvqd.clip.encoder import ClipEncoder
    from clipvqd.clip.standin import StandinClipConfig, train_standin_clip
    from clipvqd.cli import main
    from clipvqd.clip2latent.generator import load_generator, synthesis
    from clipvqd.lafite.train import load_generator as load_lafite
    from clipvqd.manifest import read_manifest

    clip = tmp_path / "clip.safetensors"
    train_standin_clip(small_faces / "clip_pairs.csv",
                       StandinClipConfig(model_name="test-c2l-conditioner", embed_dim=12, vision_tower="resnet",
                                         vision_width=8, vision_layers=1, text_width=32, text_layers=1, text_heads=2,
                                         epochs=1, batch_size=100),
                       tmp_path / "clip-work", clip, tmp_path / "clip-curve.csv", seed=0, progress=False)
    embed_text_column(ClipEncoder.load(clip), small_faces / "prompts.csv", "prompt", tmp_path / "prompts.safetensors",
                      progress=False)
    params = json.dumps(GEN_PARAMS)
    gen = tmp_path / "generator.safetensors"
    main(["clip2latent", "train-generator", "--params", params, "--train", str(small_faces / "train.csv"),
          "--work", str(tmp_path / "gwork"), "--out", str(gen), "--curve", str(tmp_path / "gcurve.csv")])
    generator, meta = load_generator(gen)
    assert meta["conditional"] is False and meta["clip_sha256"] is None and meta["step"] == 2
    # synthesis(mapping(z)) is the generator's own forward pass with the zero condition and constant noise
    z = torch.randn(3, 8)
    with torch.no_grad():
        assert torch.allclose(synthesis(generator, generator.mapping(z)), generator(z, torch.zeros(3, 1), "const"))
    pairs = tmp_path / "pairs.safetensors"
    main(["clip2latent", "pairs", "--params", params, "--generator", str(gen), "--clip", str(clip), "--out", str(pairs)])
    stored = load_file(str(pairs))
    assert stored["w"].shape == (40, 8) and stored["embeddings"].shape == (40, 12)
    assert torch.allclose(stored["embeddings"].norm(dim=1), torch.ones(40), atol=1e-4)
    prior = tmp_path / "prior.safetensors"
    main(["clip2latent", "train-prior", "--params", params, "--pairs", str(pairs), "--work", str(tmp_path / "pwork"),
          "--out", str(prior), "--curve", str(tmp_path / "pcurve.csv")])

    def sample(name):
        manifest = tmp_path / name / "manifest.csv"
        main(["sample", "--method", "clip2latent", "--model", str(prior), "--generator", str(gen), "--clip", str(clip),
              "--settings", json.dumps({"steps": 4, "guidance_scale": 2.0}), "--prompts", str(small_faces / "prompts.csv"),
              "--prompt-embeddings", str(tmp_path / "prompts.safetensors"), "--samples-per-prompt", "2",
              "--seed", "1", "--manifest", str(manifest)])
        return read_manifest(manifest, verify=True)

    first, second = sample("a"), sample("b")
    prompts = (small_faces / "prompts.csv").read_text().strip().splitlines()[1:]
    assert len(first) == 2 * len(prompts) and set(first["method"]) == {"clip2latent"}
    assert list(first["sha256"]) == list(second["sha256"]) and set(first["s"]) == {2.0}
    # a conditional LAFITE generator is refused as clip2latent's decoder
    lafite_like, _ = load_lafite(gen)
    assert lafite_like.config.condition_dim == 1
    with pytest.raises(SystemExit, match="clip2latent.prior_train"):
        main(["clip2latent", "train-prior", "--params", json.dumps({"prior_train": {"stepz": 1}}), "--pairs", str(pairs),
              "--work", str(tmp_path / "x"), "--out", str(tmp_path / "x.safetensors"), "--curve", str(tmp_path / "x.csv")])


# ---- config <-> schema --------------------------------------------------------------------------------

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
BLOCKS = {
    "generator_model": (GeneratorModelConfig, ()),
    "generator_train": (GeneratorTrainConfig, ()),
    "pairs": (PairsConfig, ()),
    "prior_model": (PriorModelConfig, ("latent_dim", "embed_dim")),
    "prior_train": (PriorTrainConfig, ()),
    "sampling": (PriorSamplingConfig, ()),
}


@pytest.mark.parametrize("key", sorted(BLOCKS))
def test_schema_block_mirrors_the_library_dataclass(key):
    cls, skip = BLOCKS[key]
    block = yaml.safe_load(SCHEMA.read_text())["properties"]["clip2latent"]
    assert block["additionalProperties"] is False and block.get("description")
    sub = block["properties"][key]
    assert sub["additionalProperties"] is False and sub.get("description")
    defaults = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cls()).items() if k not in skip}
    assert {k: spec["default"] for k, spec in sub["properties"].items()} == defaults
    assert all(spec.get("description") for spec in sub["properties"].values())


def test_tiny_config_block_validates_and_builds_the_dataclasses():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    tiny = yaml.safe_load((REPO / "tests" / "configs" / "tiny.yaml").read_text())
    merged = copy.deepcopy(config)
    merged["clip2latent"] = tiny["clip2latent"]
    validate(merged, str(SCHEMA))
    for key, (cls, _) in BLOCKS.items():
        cls.from_dict(merged["clip2latent"][key])
    bad = copy.deepcopy(config)
    bad["clip2latent"] = {"prior_train": {"cond_drop_prob": 1.5}}
    with pytest.raises(Exception, match="1.5"):
        validate(bad, str(SCHEMA))


@pytest.mark.parametrize("overlay", ["ffhq", "coco"])
def test_paper_overlays_use_the_clip2latent_presets(overlay):
    config = yaml.safe_load((REPO / "configs" / f"{overlay}.yaml").read_text())
    validate(config, str(SCHEMA))
    block = config["clip2latent"]
    assert GeneratorModelConfig.from_dict(block["generator_model"]) == GeneratorModelConfig.paper()
    assert GeneratorTrainConfig.from_dict(block["generator_train"]) == GeneratorTrainConfig.paper()
    assert PairsConfig.from_dict(block["pairs"]) == PairsConfig.paper()
    sizes = {"latent_dim": 512, "embed_dim": 512}
    assert PriorModelConfig.from_dict({**block["prior_model"], **sizes}) == PriorModelConfig.paper()
    assert PriorTrainConfig.from_dict(block["prior_train"]) == PriorTrainConfig.paper()
    assert PriorSamplingConfig.from_dict(block["sampling"]) == PriorSamplingConfig.paper()
    assert PriorModelConfig.paper().predict_x_start and PriorModelConfig.paper().beta_schedule == "cosine"
    assert PriorTrainConfig.paper().cond_drop_prob == 0.2 and PriorTrainConfig.paper().embed_noise_scale == 1.0
