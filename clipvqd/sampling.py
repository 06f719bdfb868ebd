"""One sampling job for every method: prompts in, PNGs + manifest out (the workflow's `sample` rule).

The plan (which prompt each image shows, and its random stream), the prompt embeddings and the sample
set are the same code for every method (`clipvqd.samples`); a method contributes only its sampler, which
loads its model files, checks that they belong together, and draws one image per planned row from that
row's prompt embedding. `sample_prompts` picks the sampler from the method's name. Nothing heavy is
imported at module level: the command line reads METHODS from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:
    import pandas as pd

DIFFUSION_METHODS = ("clip-vqdiffusion", "paired", "unconditional")  # one denoiser trainer, three conditions
METHODS = DIFFUSION_METHODS + ("lafite", "clip2latent")


class SamplingError(ValueError):
    """Model files that do not belong together, or a setting the model cannot honour."""


@dataclass(frozen=True)
class PlannedPrompts:
    """The input side of the interface: the prompts (with the prefix CLIP encoded, which is what the
    manifest records and CLIPscore compares), the fixed plan, and where their embeddings are."""

    prompts: pd.DataFrame
    plan: pd.DataFrame
    embeddings_path: Path

    @classmethod
    def read(cls, prompts_csv: str | Path, embeddings_path: str | Path, prefix: str = "",
             samples_per_prompt: int = 16, best_of_prompts: int = 0) -> "PlannedPrompts":
        from clipvqd.samples import read_prompts, sample_plan

        prompts = read_prompts(prompts_csv)
        prompts["prompt"] = prefix + prompts["prompt"]
        return cls(prompts, sample_plan(prompts, samples_per_prompt, best_of_prompts), Path(embeddings_path))

    def conditions(self, expected_clip_sha256: str | None = None):
        """Each planned image's prompt embedding `(N, D)`, refused if another CLIP made the cache."""
        from clipvqd.clip.embed import load_embeddings
        from clipvqd.samples import prompt_rows

        embeddings = load_embeddings(self.embeddings_path, expected_clip_sha256=expected_clip_sha256)
        return prompt_rows(embeddings, self.prompts, self.plan)


# A sampler: (method, model files, planned prompts, settings, seed, batch size, device)
#   -> (uint8 images (N, 3, R, R) in plan order, the settings recorded in the manifest).
Sampler = Callable[..., tuple[Any, dict[str, Any]]]


def _check_clip(model: str | Path, recorded_sha256: str | None, clip: str | Path | None) -> None:
    from clipvqd.hashing import sha256_file

    if clip and recorded_sha256 and sha256_file(clip) != recorded_sha256:
        raise SamplingError(f"{model} was trained with CLIP {recorded_sha256}, not with {clip}")


# Training modes without condition dropout: their null vector was never trained, so guidance is undefined.
PRETRAINING_MODES = ("language_free", "paired")


def check_guidance(model: Any, meta: Mapping[str, Any], guidance_scale: float) -> None:
    """Refuse guidance s != 1 for a denoiser pretrained without condition dropout (language-free or paired
    pretraining), before anything else is loaded."""
    if guidance_scale != 1.0 and meta.get("mode") in PRETRAINING_MODES:
        raise SamplingError(f"{model} was pretrained without condition dropout (mode {meta.get('mode')}), so it has no "
                            f"trained null vector for guidance s={guidance_scale}; sample it with s=1 or use the model "
                            "of its CFG fine-tune")


def sample_diffusion(method: str, files: Mapping[str, Any], planned: PlannedPrompts, settings: Mapping[str, Any], *,
                     seed: int, batch_size: int, device: str):
    """CLIP-VQDiffusion and its two controls: the denoiser's token maps, decoded by the tokenizer.
    Settings: s (guidance), r (truncation), steps, purity, null_condition (how guidance feeds the null
    vector); the unconditional control samples from the null condition only."""
    import torch

    from clipvqd.diffusion import load_denoiser
    from clipvqd.diffusion.generate import SamplingSettings, generate_images
    from clipvqd.tokenizer import CodeMapping, load_tokenizer

    settings = dict(settings)
    denoiser, null_condition, meta = load_denoiser(files["model"], device=device)
    check_guidance(files["model"], meta, settings.get("s", 1.0))
    tokenizer, _ = load_tokenizer(files["tokenizer"], device=device)
    mapping = CodeMapping.load(files["codebook"])
    conditions = planned.conditions()
    sampling = SamplingSettings(guidance_scale=settings.get("s", 1.0), truncation_r=settings.get("r", 1.0),
                                steps=settings.get("steps"), purity=settings.get("purity", False),
                                unconditional=method == "unconditional",
                                null_condition=settings.get("null_condition", "normalized"))
    torch.manual_seed(seed)
    images = generate_images(denoiser, null_condition, tokenizer, mapping, conditions, sampling, seed=seed,
                             batch_size=batch_size)
    return images, settings


def sample_lafite(method: str, files: Mapping[str, Any], planned: PlannedPrompts, settings: Mapping[str, Any], *,
                  seed: int, batch_size: int, device: str):
    """LAFITE: the generator conditioned on each prompt's CLIP text embedding. It has no sampling settings;
    `settings` are only recorded."""
    from clipvqd.lafite import generate_images, load_generator

    generator, meta = load_generator(files["model"], device=device)
    _check_clip(files["model"], meta.get("clip_sha256"), files.get("clip"))
    conditions = planned.conditions(expected_clip_sha256=meta.get("clip_sha256"))
    return generate_images(generator, conditions, seed=seed, batch_size=batch_size), dict(settings)


def sample_clip2latent(method: str, files: Mapping[str, Any], planned: PlannedPrompts, settings: Mapping[str, Any],
                       *, seed: int, batch_size: int, device: str):
    """clip2latent: the prior samples w from each prompt's CLIP text embedding, the generator renders it.
    Settings: the clip2latent.sampling block (its own batch size; `batch_size` is not used)."""
    from clipvqd.clip2latent.config import PriorSamplingConfig
    from clipvqd.clip2latent.generator import load_generator
    from clipvqd.clip2latent.sample import generate_images
    from clipvqd.clip2latent.train import load_prior
    from clipvqd.hashing import sha256_file

    try:
        config = PriorSamplingConfig.from_dict(dict(settings), source="clip2latent.sampling")
    except (TypeError, ValueError) as error:
        raise SamplingError(str(error)) from None
    prior, meta = load_prior(files["model"], device=device)
    generator, _ = load_generator(files["generator"], device=device)
    if meta.get("generator_sha256") and sha256_file(files["generator"]) != meta["generator_sha256"]:
        raise SamplingError(f"{files['model']} was trained on pairs from generator {meta['generator_sha256']}, "
                            f"not from {files['generator']}")
    _check_clip(files["model"], meta.get("clip_sha256"), files.get("clip"))
    conditions = planned.conditions(expected_clip_sha256=meta.get("clip_sha256"))
    images = generate_images(prior, generator, conditions, config, seed=seed)
    return images, {"s": config.guidance_scale, "steps": config.steps}


# Each sampler and the model files it reads (beyond the prompts); `clip` is optional where listed last.
SAMPLERS: dict[str, tuple[Sampler, tuple[str, ...], tuple[str, ...]]] = {
    **{method: (sample_diffusion, ("model", "tokenizer", "codebook"), ()) for method in DIFFUSION_METHODS},
    "lafite": (sample_lafite, ("model",), ("clip",)),
    "clip2latent": (sample_clip2latent, ("model", "generator"), ("clip",)),
}


def sample_prompts(method: str, files: Mapping[str, str | Path | None], prompts_csv: str | Path,
                   prompt_embeddings: str | Path, manifest: str | Path, *, variant: str = "default",
                   settings: Mapping[str, Any] | None = None, prompt_prefix: str = "", samples_per_prompt: int = 16,
                   best_of_prompts: int = 0, seed: int = 0, batch_size: int = 64,
                   device: str = "cpu") -> pd.DataFrame:
    """Draw `samples_per_prompt` images of every prompt with `method` (16 of each of the first
    `best_of_prompts` prompts, for best-of-16 CLIPscore), and write them as a sample set:
    PNGs in images/ beside `manifest`, and the manifest (returned). `files` holds the method's model files
    by name (model, tokenizer, codebook, generator, clip; see SAMPLERS); the ones it does not read must be
    absent or None."""
    from clipvqd.samples import write_sample_set

    if method not in SAMPLERS:
        raise SamplingError(f"unknown method '{method}' (known: {', '.join(METHODS)})")
    sampler, required, optional = SAMPLERS[method]
    given = {name for name, path in files.items() if path}
    missing = [name for name in required if name not in given]
    unused = sorted(given - set(required) - set(optional))
    if missing or unused:
        raise SamplingError(f"method '{method}' reads {', '.join(required + optional)}"
                            + (f"; missing: {', '.join(missing)}" if missing else "")
                            + (f"; not read by it: {', '.join(unused)}" if unused else ""))
    planned = PlannedPrompts.read(prompts_csv, prompt_embeddings, prompt_prefix, samples_per_prompt, best_of_prompts)
    images, recorded = sampler(method, files, planned, settings or {}, seed=seed, batch_size=batch_size,
                               device=device)
    return write_sample_set(images, planned.plan, Path(manifest).parent, manifest, method=method, variant=variant,
                            seed=seed, settings=recorded)
