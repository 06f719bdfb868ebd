"""Codebook compaction: the diffusion vocabulary is exactly the codes the tokenizer uses.

A trained codebook leaves many codes unused (VQ-Diffusion's 8192-code tokenizer used 2887 of them on
its training data). Counting argmax codes over the training split gives a mapping between full code
indices and a dense "compact" vocabulary 0..V-1, so the diffusion model never spends output logits on
codes that cannot occur. The mapping is stored as JSON beside the tokenizer checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from clipvqd.tokenizer.model import GumbelVQGAN


def usage_statistics(counts: torch.Tensor) -> dict[str, float]:
    """Fraction of codes used and perplexity exp(H) of a code histogram (perplexity K = perfectly uniform)."""
    counts = counts.double()
    total = counts.sum()
    if total == 0:
        return {"codes_used": 0, "fraction_used": 0.0, "perplexity": 0.0, "tokens": 0}
    p = counts[counts > 0] / total
    return {
        "codes_used": int((counts > 0).sum()),
        "fraction_used": float((counts > 0).double().mean()),
        "perplexity": float(torch.exp(-(p * p.log()).sum())),
        "tokens": int(total),
    }


class UnknownCodeError(ValueError):
    pass


@dataclass
class CodeMapping:
    """`used_codes[i]` is the full code of compact code i; `counts` is the training-split histogram."""

    codebook_size: int
    used_codes: torch.Tensor  # (V,) long, ascending
    counts: torch.Tensor  # (K,) long
    provenance: dict[str, Any]

    def __post_init__(self) -> None:
        self.used_codes = torch.as_tensor(self.used_codes, dtype=torch.long)
        self.counts = torch.as_tensor(self.counts, dtype=torch.long)
        if self.counts.shape != (self.codebook_size,):
            raise ValueError(f"code counts have shape {tuple(self.counts.shape)}, expected ({self.codebook_size},)")
        if len(self.used_codes) == 0:
            raise ValueError("a code mapping needs at least one used code")
        if (self.used_codes.diff() <= 0).any() or self.used_codes[0] < 0 or self.used_codes[-1] >= self.codebook_size:
            raise ValueError("used_codes must be strictly ascending codes inside the codebook")
        self._full_to_compact = torch.full((self.codebook_size,), -1, dtype=torch.long)
        self._full_to_compact[self.used_codes] = torch.arange(len(self.used_codes))

    @property
    def vocab_size(self) -> int:
        return len(self.used_codes)

    def is_used(self, codes: torch.Tensor) -> torch.Tensor:
        return self._full_to_compact.to(codes.device)[codes.long()] >= 0

    def compact(self, codes: torch.Tensor) -> torch.Tensor:
        """Full codes -> compact codes; a code outside the vocabulary is an error, never a silent remap."""
        compact = self._full_to_compact.to(codes.device)[codes.long()]
        if (compact < 0).any():
            unknown = sorted(set(codes[compact < 0].flatten().tolist()))
            raise UnknownCodeError(
                f"codes {unknown[:10]}{' ...' if len(unknown) > 10 else ''} are not in the compacted vocabulary "
                f"({self.vocab_size} of {self.codebook_size} codes); encode with allowed_codes=mapping.used_codes"
            )
        return compact

    def expand(self, compact_codes: torch.Tensor) -> torch.Tensor:
        """Compact codes -> full codes (for the tokenizer's decoder)."""
        compact_codes = compact_codes.long()
        if compact_codes.numel() and (compact_codes.min() < 0 or compact_codes.max() >= self.vocab_size):
            raise UnknownCodeError(f"compact codes range over [{int(compact_codes.min())}, {int(compact_codes.max())}], "
                                   f"outside the vocabulary [0, {self.vocab_size - 1}]")
        return self.used_codes.to(compact_codes.device)[compact_codes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "tokenizer_code_mapping",
            "codebook_size": self.codebook_size,
            "vocab_size": self.vocab_size,
            "used_codes": self.used_codes.tolist(),
            "counts": self.counts.tolist(),
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], source: str = "code mapping") -> "CodeMapping":
        if values.get("kind") != "tokenizer_code_mapping":
            raise ValueError(f"{source} is not a tokenizer code mapping (kind={values.get('kind')!r})")
        mapping = cls(values["codebook_size"], values["used_codes"], values["counts"], dict(values.get("provenance", {})))
        if mapping.vocab_size != values["vocab_size"]:
            raise ValueError(f"{source} records vocab_size {values['vocab_size']} but lists {mapping.vocab_size} codes")
        return mapping

    @classmethod
    def load(cls, path: str | Path) -> "CodeMapping":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"code mapping not found: {path}")
        return cls.from_dict(json.loads(path.read_text()), str(path))

    def check_matches(self, model: GumbelVQGAN, source: str = "code mapping") -> None:
        if model.config.codebook_size != self.codebook_size:
            raise ValueError(f"{source} is for a codebook of {self.codebook_size} codes, "
                             f"the tokenizer has {model.config.codebook_size}")


@torch.no_grad()
def count_code_usage(model: GumbelVQGAN, dataset: Dataset, batch_size: int = 256,
                     device: str | torch.device = "cpu", progress: bool = False) -> torch.Tensor:
    """Histogram (K,) of the argmax codes the tokenizer assigns over `dataset`."""
    model.eval().to(device)
    counts = torch.zeros(model.config.codebook_size, dtype=torch.long)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for images in tqdm(loader, desc="code usage", unit="batch", disable=not progress):
        codes = model.encode(images.to(device))
        counts += torch.bincount(codes.flatten().cpu(), minlength=model.config.codebook_size)
    return counts


def build_code_mapping(counts: torch.Tensor, min_count: int = 1,
                       provenance: Mapping[str, Any] | None = None) -> CodeMapping:
    """Keep every code seen at least `min_count` times, in ascending code order."""
    counts = torch.as_tensor(counts, dtype=torch.long)
    used = torch.nonzero(counts >= min_count).flatten()
    if len(used) == 0:
        raise ValueError(f"no code was used at least {min_count} times; cannot build a vocabulary")
    return CodeMapping(len(counts), used, counts, {"min_count": min_count, **dict(provenance or {})})
