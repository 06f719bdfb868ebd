"""Attribute accuracy on the worlds: the oracle's reading of generated images, one check per (image,
requested attribute), and the protocol entry that says how it was measured (attr_acc, attr_acc_ood,
attr_acc/<attribute>; their per-prompt sums are built in `alignment.py`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

CHECK_COLUMNS = ("prompt_id", "sample_index", "attribute", "correct")


def attribute_checks(oracle_path: str | Path, samples: str | Path, prompts_csv: str | Path) -> pd.DataFrame:
    """One row per (image, attribute its prompt requested): whether the oracle reads the requested value.
    A blank attribute cell of the prompt table means the prompt did not ask for it."""
    import torch

    from clipvqd.manifest import ManifestImages, read_manifest
    from clipvqd.oracle import Oracle

    oracle = Oracle(oracle_path)
    frame = read_manifest(samples, verify=False)
    prompts = pd.read_csv(prompts_csv, keep_default_na=False, dtype=str).set_index("prompt_id")
    unknown = sorted(set(frame["prompt_id"].astype(str)) - set(prompts.index))
    if unknown:
        raise ValueError(f"{samples} refers to prompt ids {unknown[:5]} absent from {prompts_csv}")
    images = ((ManifestImages(samples, verify=False).all() + 1) * 127.5).round().to(torch.uint8)
    predicted = oracle.predict(images)
    rows = []
    for index, (prompt_id, sample_index) in enumerate(zip(frame["prompt_id"].astype(str), frame["sample_index"])):
        for name in oracle.attributes:
            requested = prompts.at[prompt_id, name] if name in prompts.columns else ""
            if requested:
                rows.append({"prompt_id": prompt_id, "sample_index": int(sample_index), "attribute": name,
                             "correct": predicted[name][index] == requested})
    return pd.DataFrame(rows, columns=list(CHECK_COLUMNS))


def attribute_entry(oracle_path: str | Path, samples: str | Path, prompts_csv: str | Path, images_in: int,
                    images_ood: int) -> dict:
    """The protocol entry behind one seed's attribute-accuracy rows."""
    from clipvqd.checkpoint import load_meta
    from clipvqd.evaluation.protocol import make_entry, sampling_description
    from clipvqd.hashing import sha256_file, sha256_of_hashes
    from clipvqd.manifest import read_manifest

    frame = read_manifest(samples, verify=False)
    prompts = pd.read_csv(prompts_csv, keep_default_na=False, dtype=str)
    meta = load_meta(oracle_path)
    return make_entry(
        "attribute_accuracy",
        metrics=["attr_acc", "attr_acc_ood", "attr_acc/<attribute>"],
        definition=("share of (image, requested attribute) pairs whose value the attribute oracle reads off the "
                    "image; attr_acc over in-distribution prompts, attr_acc_ood over prompts asking for held-out "
                    "attribute combinations, attr_acc/<attribute> over every prompt that requests the attribute; "
                    "each prompt contributes its first samples_per_prompt samples"),
        oracle={"weights_sha256": sha256_file(oracle_path), "world": meta.get("world"),
                "resolution": meta.get("resolution"),
                "trained_on": "renders with their true attributes, never generated images"},
        prompt_table={"path": str(prompts_csv), "sha256": sha256_file(prompts_csv), "n_prompts": len(prompts),
                      "n_ood_prompts": int((prompts["ood"] == "1").sum()) if "ood" in prompts.columns else 0},
        sampling=sampling_description(frame),
        samples_content_sha256=sha256_of_hashes(frame["sha256"].astype(str)),
        sample_manifest=str(samples),
        images={"in_distribution": images_in, "ood": images_ood},
    )
