"""The world's stand-in CLIP and attribute oracle actually learn (known answers: chance levels)."""

import dataclasses
import json

import pytest
import torch

from clipvqd.clip.embed import StaleEmbeddings, embed_images, load_embeddings
from clipvqd.clip.encoder import ClipEncoder
from clipvqd.clip.evaluate import evaluate_clip, retrieval_recall
from clipvqd.clip.standin import StandinClipConfig, train_standin_clip
from clipvqd.hashing import sha256_file
from clipvqd.manifest import ManifestImages, to_uint8
from clipvqd.oracle import Oracle, OracleConfig, score_samples, train_oracle
from conftest import make_faces


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("quality-world")
    make_faces(out, seed=11, clip_pairs=1400, train=40, reference=60, oracle=1600, clip_holdout_fraction=0.15)
    return out


def test_retrieval_recall_known_answer():
    texts = torch.eye(4)
    images = torch.eye(4)[[0, 1, 3, 2]]  # pairs 2 and 3 swapped
    recall = retrieval_recall(texts, images, gallery=4, ks=(1, 2))
    # The swapped captions rank their own image second (behind the other one): found at k=2.
    assert recall["recall@1"] == 0.5 and recall["recall@2"] == 1.0 and recall["recall@1_chance"] == 0.25


def test_contrastive_loss_is_clip_loss_and_negatives_only_add_wrong_answers():
    """Without extra texts it is open_clip's ClipLoss; a hard negative far from every image (cosine -1)
    changes nearly nothing; a copy of caption 0 joins every image's choices: image i's image-to-text term
    grows by log(1 + q_i), q_i its softmax share of caption 0, and the texts still choose among the images."""
    import math

    import open_clip

    from clipvqd.clip.standin import contrastive_loss

    generator = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(6, 8, generator=generator), dim=1)
    texts = torch.nn.functional.normalize(images + 0.3 * torch.randn(6, 8, generator=generator), dim=1)
    scale = torch.tensor(10.0)
    plain = contrastive_loss(images, texts, scale)
    assert torch.allclose(plain, open_clip.ClipLoss()(images, texts, scale))
    far = torch.stack([-images.sum(0) / images.sum(0).norm()] * 2)
    assert abs(float(contrastive_loss(images, torch.cat([texts, far]), torch.tensor(100.0)))
               - float(contrastive_loss(images, texts, torch.tensor(100.0)))) < 1e-3
    shares = torch.softmax(scale * images @ texts.T, dim=1)[:, 0]
    expected = float(plain) + sum(math.log(1 + float(q)) for q in shares) / 6 / 2  # mean of 6, half the sum
    with_copy = contrastive_loss(images, torch.cat([texts, texts[:1]]), scale)
    assert abs(float(with_copy) - expected) < 1e-5


def test_standin_clip_far_above_chance_and_cache_keyed_by_identity(world, tmp_path):
    cfg = StandinClipConfig(model_name="test-standin", embed_dim=64, vision_tower="resnet", vision_width=16,
                            vision_layers=1, text_width=64, text_layers=2, epochs=10, batch_size=100,
                            learning_rate=2e-3)
    identity = train_standin_clip(world / "clip_pairs.csv", cfg, tmp_path / "work", tmp_path / "clip.safetensors",
                                  tmp_path / "curve.csv", seed=0, progress=False)
    metrics = evaluate_clip(tmp_path / "clip.safetensors", world / "clip_pairs.csv", "faces", gallery=100)
    assert metrics["clip_sha256"] == identity
    # The sidecar says what it was trained on: the split, its manifest's sha256, the wording, the pair count.
    pairs = json.loads((tmp_path / "clip.json").read_text())["source"]["pairs"]
    assert pairs == {"split": "clip_pairs", "manifest_sha256": sha256_file(world / "clip_pairs.csv"),
                     "train_pairs": 1190, "wordings": ["conditioner"]}
    assert json.loads((tmp_path / "clip.json").read_text())["cpu_s"] > 0  # its own cost, as every trainer's
    recall, zero_shot = metrics["text_to_image"], metrics["zero_shot_attributes"]
    assert recall["recall@1"] >= 5 * recall["recall@1_chance"], metrics
    assert recall["recall@5"] >= 2 * recall["recall@5_chance"], metrics
    assert zero_shot["background"]["accuracy"] >= 2 * zero_shot["background"]["chance"], metrics

    encoder = ClipEncoder.load(tmp_path / "clip.safetensors")
    cached = embed_images(encoder, world / "train.csv", tmp_path / "emb.safetensors", batch_size=16, progress=False)
    assert torch.allclose(cached.norm(dim=1), torch.ones(len(cached)), atol=1e-5)
    # Decoding straight to uint8 on the prefetch thread gives what the float path gives, in manifest order
    # across batch boundaries (40 images in batches of 16).
    images = ManifestImages(world / "train.csv")
    assert torch.equal(cached, encoder.encode_images(to_uint8(images.all())))
    assert torch.equal(load_embeddings(tmp_path / "emb.safetensors", identity), cached)
    with pytest.raises(StaleEmbeddings, match="not by the current CLIP"):
        load_embeddings(tmp_path / "emb.safetensors", "f" * 64)


def test_embedding_cache_checks_each_file_as_it_reads_it(world, tmp_path):
    """The cache hashes each image as its loader reads it instead of in a separate pass: a swapped image is
    named, and no cache file is written."""
    import shutil

    import open_clip
    import pandas as pd

    from clipvqd.clip.encoder import register_model_config, save_clip
    from clipvqd.clip.standin import STANDIN_MEAN, STANDIN_STD
    from clipvqd.manifest import ManifestError

    copy = tmp_path / "world"
    frame = pd.read_csv(world / "train.csv", dtype=str, keep_default_na=False).head(20)
    for relative in frame["path"]:
        (copy / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(world / relative, copy / relative)
    frame.to_csv(copy / "train.csv", index=False)
    cfg = StandinClipConfig(model_name="test-verify-on-read", embed_dim=16, vision_tower="resnet", vision_width=8,
                            vision_layers=1, text_width=32, text_layers=1)
    register_model_config(cfg.model_name, cfg.model_cfg())
    save_clip(tmp_path / "clip.safetensors", open_clip.create_model(cfg.model_name, pretrained=None),
              model_name=cfg.model_name, model_cfg=cfg.model_cfg(), mean=STANDIN_MEAN, std=STANDIN_STD,
              source={"kind": "test stand-in (untrained)"})
    encoder = ClipEncoder.load(tmp_path / "clip.safetensors")
    ok = embed_images(encoder, copy / "train.csv", tmp_path / "ok.safetensors", batch_size=8, progress=False)
    assert len(ok) == 20

    # Image 13 (second batch) replaced by image 0: it decodes fine, but its hash is not the recorded one.
    shutil.copyfile(copy / frame["path"][0], copy / frame["path"][13])
    with pytest.raises(ManifestError, match=frame["path"][13].split("/")[-1]):
        embed_images(encoder, copy / "train.csv", tmp_path / "bad.safetensors", batch_size=8, progress=False)
    assert not (tmp_path / "bad.safetensors").exists()
    # A missing file is refused up front, before any image is encoded.
    (copy / frame["path"][5]).unlink()
    with pytest.raises(ManifestError, match="does not exist"):
        embed_images(encoder, copy / "train.csv", tmp_path / "bad.safetensors", batch_size=8, progress=False)


def test_oracle_reads_held_out_renders(world, tmp_path):
    train_oracle(world / "oracle.csv", "faces", OracleConfig(epochs=12, batch_size=64), tmp_path / "work",
                 tmp_path / "oracle.safetensors", tmp_path / "curve.csv", seed=0, progress=False)
    oracle = Oracle(tmp_path / "oracle.safetensors")
    held_out = oracle.accuracy_on_manifest(world / "oracle.csv", fold="test")
    assert min(held_out.values()) >= 0.98, held_out
    assert json.loads((tmp_path / "oracle.json").read_text())["cpu_s"] > 0  # its own cost, as every trainer's

    # Scoring a "generated" folder: reference renders posing as samples for the prompts whose attributes
    # they happen to have must score 1; the same images under contradicting prompts must score 0.
    import pandas as pd

    reference = pd.read_csv(world / "reference.csv", dtype=str, keep_default_na=False).head(20)
    prompts, samples = [], []
    for i, row in enumerate(reference.to_dict("records")):
        wrong_hat = "no" if row["hat"] == "yes" else "yes"
        prompts.append({"prompt_id": f"a{i}", "prompt": "x", "ood": "0", "hair_color": row["hair_color"],
                        "background": row["background"], "hat": ""})
        prompts.append({"prompt_id": f"b{i}", "prompt": "x", "ood": "1", "hair_color": "", "background": "",
                        "hat": wrong_hat})
        samples += [{"path": row["path"], "sha256": row["sha256"], "prompt_id": f"a{i}"},
                    {"path": row["path"], "sha256": row["sha256"], "prompt_id": f"b{i}"}]
    pd.DataFrame(prompts).reindex(columns=["prompt_id", "prompt", "ood", *oracle.attributes]).fillna("").to_csv(
        tmp_path / "prompts.csv", index=False)
    pd.DataFrame(samples).to_csv(world / "samples_test.csv", index=False)
    scores = score_samples(tmp_path / "oracle.safetensors", world / "samples_test.csv", tmp_path / "prompts.csv")
    assert scores["attr_acc"] >= 0.95 and scores["attr_acc_ood"] <= 0.05, json.dumps(scores)


# ---- reruns: changed settings start over, unchanged ones resume -------------------------------------------

def _same_weights(a, b):
    from safetensors.torch import load_file

    first, second = load_file(str(a)), load_file(str(b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _check_rerun(kill, capsys, tmp_path, train, cfg, changed):
    """`train(cfg, work, name)` writes tmp_path/name.safetensors. A snapshot of `cfg` exists when `changed`
    is run in the same folder: it must start over and equal a fresh run of `changed`. Unchanged, a killed
    run resumes and equals an uninterrupted one."""
    kill(lambda: train(cfg, tmp_path / "work", "killed"))
    capsys.readouterr()
    train(changed, tmp_path / "work", "changed")
    assert "other data or settings; starting over" in capsys.readouterr().out
    train(changed, tmp_path / "fresh-work", "fresh")
    assert _same_weights(tmp_path / "changed.safetensors", tmp_path / "fresh.safetensors")

    train(cfg, tmp_path / "straight-work", "straight")
    kill(lambda: train(cfg, tmp_path / "work2", "killed2"))
    capsys.readouterr()
    train(cfg, tmp_path / "work2", "resumed")
    assert "resuming from the snapshot at step" in capsys.readouterr().out
    assert _same_weights(tmp_path / "resumed.safetensors", tmp_path / "straight.safetensors")


def test_oracle_rerun_with_other_settings_starts_over_and_unchanged_resumes(
        small_faces, tmp_path, kill_after_first_snapshot, capsys, single_thread):
    def train(cfg, work, name):
        train_oracle(small_faces / "oracle.csv", "faces", cfg, work, tmp_path / f"{name}.safetensors",
                     tmp_path / f"{name}.csv", seed=0, progress=False)

    cfg = OracleConfig(width=4, epochs=2, batch_size=16)
    _check_rerun(kill_after_first_snapshot, capsys, tmp_path, train, cfg, dataclasses.replace(cfg, learning_rate=1e-2))
    steps = [int(line.split(",")[0]) for line in (tmp_path / "resumed.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 7))  # 45 training renders, 3 batches an epoch: no gap, no repeated row


def test_standin_clip_rerun_with_other_settings_starts_over_and_unchanged_resumes(
        small_faces, tmp_path, kill_after_first_snapshot, capsys, single_thread):
    def train(cfg, work, name):
        train_standin_clip(small_faces / "clip_pairs.csv", cfg, work, tmp_path / f"{name}.safetensors",
                           tmp_path / f"{name}.csv", seed=0, progress=False)

    cfg = StandinClipConfig(model_name="test-rerun-standin", embed_dim=16, vision_tower="resnet", vision_width=8,
                            vision_layers=1, text_width=32, text_layers=1, text_heads=2, epochs=2, batch_size=50,
                            snapshot_every=1)
    _check_rerun(kill_after_first_snapshot, capsys, tmp_path, train, cfg, dataclasses.replace(cfg, learning_rate=3e-3))


def test_standin_clip_used_vocabulary_rows_save_the_weights_of_the_whole_table(small_faces, tmp_path, single_thread):
    """vocabulary_rows "used" (the optimiser holds only the token rows the captions and negatives use) saves
    the weights "all" (open_clip's whole 49408-row table) saves, bit for bit: the rows left out get no gradient
    and no weight decay, so AdamW never moves them."""
    from safetensors.torch import load_file

    saved = {}
    for rows in ("all", "used"):
        cfg = StandinClipConfig(model_name="test-vocabulary-rows", embed_dim=16, vision_tower="resnet", vision_width=8,
                                vision_layers=1, text_width=32, text_layers=1, text_heads=2, epochs=2, batch_size=50,
                                text_negatives="every", vocabulary_rows=rows)
        train_standin_clip(small_faces / "judge_pairs.csv", cfg, tmp_path / rows / "work",
                           tmp_path / rows / "clip.safetensors", tmp_path / rows / "curve.csv", seed=0, progress=False)
        saved[rows] = load_file(str(tmp_path / rows / "clip.safetensors"))
        recorded = json.loads((tmp_path / rows / "clip.json").read_text())["source"]["config"]
        assert recorded.get("vocabulary_rows") == (None if rows == "all" else "used")  # "all" keeps old fingerprints
    assert saved["all"].keys() == saved["used"].keys()
    assert all(torch.equal(saved["all"][key], saved["used"][key]) for key in saved["all"])
    table = saved["used"]["token_embedding.weight"]
    assert table.shape[0] == 49408
    with pytest.raises(ValueError, match="vocabulary_rows must be one of"):
        StandinClipConfig(vocabulary_rows="some")


@pytest.mark.parametrize("scheme", ["chosen", "every"])
def test_standin_text_negatives_every_contrasts_each_named_attributes_negative(small_faces, tmp_path, monkeypatch,
                                                                              single_thread, scheme):
    """One batch of every judge pair, every image with its negatives: "chosen" adds each caption's one
    negative_caption, "every" each of its negative_captions (one per named attribute, colours included)."""
    import pandas as pd

    from clipvqd.clip import standin

    texts_per_step = []
    loss = standin.contrastive_loss

    def counting(image_features, text_features, logit_scale):
        texts_per_step.append((len(image_features), len(text_features)))
        return loss(image_features, text_features, logit_scale)

    monkeypatch.setattr(standin, "contrastive_loss", counting)
    pairs = pd.read_csv(small_faces / "judge_pairs.csv", keep_default_na=False)
    cfg = StandinClipConfig(model_name=f"test-negatives-{scheme}", embed_dim=16, vision_tower="resnet",
                            vision_width=8, vision_layers=1, text_width=32, text_layers=1, text_heads=2, epochs=1,
                            batch_size=len(pairs), hard_negative_fraction=0.0, text_negatives=scheme)
    train_standin_clip(small_faces / "judge_pairs.csv", cfg, tmp_path / "work", tmp_path / "clip.safetensors",
                       tmp_path / "curve.csv", seed=0, progress=False)
    every = sum(len(json.loads(text)) for text in pairs["negative_captions"])
    chosen = int((pairs["negative_caption"] != "").sum())
    assert every > 2 * chosen  # the captions name several attributes each
    assert texts_per_step == [(len(pairs), len(pairs) + (every if scheme == "every" else chosen))]
    recorded = json.loads((tmp_path / "clip.json").read_text())["source"]["config"]
    assert recorded.get("text_negatives") == (None if scheme == "chosen" else "every")


def test_standin_text_negatives_every_needs_the_negative_captions_column(small_faces, tmp_path):
    """A pairs file written before the column existed is refused with a message naming it."""
    import shutil

    import pandas as pd

    shutil.copytree(small_faces / "clip_pairs", tmp_path / "clip_pairs")
    pd.read_csv(small_faces / "clip_pairs.csv").drop(columns="negative_captions").to_csv(tmp_path / "old.csv", index=False)
    cfg = StandinClipConfig(model_name="test-negatives-missing", embed_dim=16, vision_tower="resnet", vision_width=8,
                            vision_layers=1, text_width=32, text_layers=1, text_heads=2, epochs=1,
                            text_negatives="every")
    with pytest.raises(ValueError, match="no negative_captions column"):
        train_standin_clip(tmp_path / "old.csv", cfg, tmp_path / "work", tmp_path / "clip.safetensors",
                           tmp_path / "curve.csv", seed=0, progress=False)
    with pytest.raises(ValueError, match="text_negatives must be one of"):
        StandinClipConfig(text_negatives="all")
