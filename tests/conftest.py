import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def copy_workflow(work: Path, extra_folders: tuple[str, ...] = ()) -> Path:
    """A scratch copy of the workflow in `work` (created): Snakefile, config.yaml, workflow/, envs/, the clipvqd
    package (without caches), `extra_folders` of the repository, and the tiny test config as tiny.yaml."""
    import shutil

    work.mkdir(parents=True, exist_ok=True)
    for item in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / item, work / item)
    for folder in ("workflow", "envs", *extra_folders):
        shutil.copytree(REPO / folder, work / folder)
    shutil.copytree(REPO / "clipvqd", work / "clipvqd", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "tests" / "configs" / "tiny.yaml", work / "tiny.yaml")
    return work


class Killed(Exception):
    """Raised in place of a kill: the trainer stops right after it has written a resume snapshot."""


@pytest.fixture
def kill_after_first_snapshot(monkeypatch):
    """`kill(train, match=None)` runs `train()` until its first resume snapshot is written, then stops it as a kill
    would (raising `Killed`, whose message names the snapshot's step and must match `match`); the trainer's own
    snapshot writer is restored afterwards, so the next `train()` resumes normally."""
    from clipvqd.training import ResumeState

    original = ResumeState.save

    def save_then_die(self, step, objects, extra=None):
        original(self, step, objects, extra)
        raise Killed(f"killed after the snapshot at step {step}")

    def kill(train, match=None):
        monkeypatch.setattr(ResumeState, "save", save_then_die)
        try:
            with pytest.raises(Killed, match=match):
                train()
        finally:
            monkeypatch.setattr(ResumeState, "save", original)

    return kill


HELD_OUT = [{"hair_color": "red", "beard": "yes"}, {"glasses": "yes", "hat": "yes"}]


def make_faces(out: Path, seed: int = 0, clip_pairs: int = 200, train: int = 40, reference: int = 20,
               oracle: int = 60, clip_holdout_fraction: float = 0.5, judge_pairs: int = 40):
    from clipvqd.worlds.generate import generate_world

    return generate_world(
        "faces", out, seed=seed, resolution=32,
        sizes={"clip_pairs": clip_pairs, "judge_pairs": judge_pairs, "train": train, "reference": reference,
               "oracle": oracle},
        heldout=HELD_OUT, prompt_count=8, attributes_per_prompt=3, ood_prompts_per_combination=2,
        oracle_test_fraction=0.25, clip_holdout_fraction=clip_holdout_fraction, progress=False,
    )


@pytest.fixture(scope="session")
def small_faces(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faces")
    make_faces(out)
    return out


@pytest.fixture(scope="session", autouse=True)
def _limit_threads():
    # Two cores: keep one test process from oversubscribing them with torch's thread pool.
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def single_thread():
    """For modules of tiny-tensor tests, where intra-op threads only add synchronisation."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
