"""Attribute accuracy on the worlds: the oracle's reading of generated images, as table rows under one
protocol entry (attr_acc, attr_acc_ood, attr_acc/<attribute>)."""

from __future__ import annotations

from pathlib import Path

from clipvqd.evaluation.protocol import ProtocolRecord


def attribute_accuracy_rows(oracle_path: str | Path, samples: str | Path, prompts_csv: str | Path, method: str,
                            variant: str, record: ProtocolRecord) -> list[dict]:
    """Score the sample set with the world's oracle, add the protocol entry to `record`, return the rows.

    Each row's count is the number of images it averages over: in-distribution images for attr_acc,
    held-out-combination images for attr_acc_ood, images whose prompt requests the attribute for
    attr_acc/<attribute>."""
    import pandas as pd

    from clipvqd.checkpoint import load_meta
    from clipvqd.evaluation.protocol import make_entry, sampling_description
    from clipvqd.evaluation.table import rows_from_metrics
    from clipvqd.hashing import sha256_file, sha256_of_hashes
    from clipvqd.manifest import read_manifest
    from clipvqd.oracle import score_samples

    scores = score_samples(oracle_path, samples, prompts_csv)
    frame = read_manifest(samples, verify=False)
    prompts = pd.read_csv(prompts_csv, keep_default_na=False, dtype=str).set_index("prompt_id")
    prompt_ids = frame["prompt_id"].astype(str)
    meta = load_meta(oracle_path)
    n_ood = int(scores["images_ood"])
    n_in = int(scores["images"]) - n_ood
    entry = make_entry(
        "attribute_accuracy",
        metrics=["attr_acc", "attr_acc_ood", "attr_acc/<attribute>"],
        definition=("share of (image, requested attribute) pairs whose value the attribute oracle reads off the "
                    "image; attr_acc over in-distribution prompts, attr_acc_ood over prompts asking for held-out "
                    "attribute combinations, attr_acc/<attribute> over every prompt that requests the attribute"),
        oracle={"weights_sha256": sha256_file(oracle_path), "world": meta.get("world"),
                "resolution": meta.get("resolution"),
                "trained_on": "renders with their true attributes, never generated images"},
        prompt_table={"path": str(prompts_csv), "sha256": sha256_file(prompts_csv), "n_prompts": len(prompts),
                      "n_ood_prompts": int((prompts["ood"] == "1").sum())},
        sampling=sampling_description(frame),
        samples_content_sha256=sha256_of_hashes(frame["sha256"].astype(str)),
        sample_manifest=str(samples),
        images={"in_distribution": n_in, "ood": n_ood},
    )
    protocol_id = record.add(entry)
    values = {}
    if scores["attr_acc"] is not None:
        values["attr_acc"] = (scores["attr_acc"], n_in)
    if scores["attr_acc_ood"] is not None:
        values["attr_acc_ood"] = (scores["attr_acc_ood"], n_ood)
    for name, accuracy in scores["per_attribute"].items():
        requesting = int(sum(bool(prompts.at[pid, name]) for pid in prompt_ids))
        values[f"attr_acc/{name}"] = (accuracy, requesting)
    return rows_from_metrics(method, variant, values, protocol_id)
