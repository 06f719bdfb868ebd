"""The device a job computes on: `device` resolution, and the GPU a job takes on a machine with several
(Snakemake's `gpu` resource counts GPUs but does not assign them). The machine here has no GPU: torch's
CUDA queries are replaced by a fake machine with three."""

from __future__ import annotations

import pytest
import torch

from clipvqd import device


@pytest.fixture
def three_gpus(monkeypatch, tmp_path):
    current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setenv(device.GPU_LOCKS, str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    yield current
    while device._CLAIMED:
        device._CLAIMED.pop().close()


def test_jobs_spread_over_the_free_gpus(three_gpus, capsys):
    # Three jobs at once (each would be its own process; a claim is per open lock file, so one process shows it).
    assert [device.resolve_device("auto") for _ in range(3)] == ["cuda"] * 3
    assert three_gpus == [0, 1, 2]
    # A fourth job than there are GPUs: it shares GPU 0 and says why.
    assert device.claim_gpu() is None and three_gpus == [0, 1, 2]
    assert "every one of the 3 GPUs is held" in capsys.readouterr().err
    # A finished job's GPU is free again.
    device._CLAIMED.pop(1).close()
    assert device.claim_gpu() == 1


@pytest.mark.parametrize("variable", ["CUDA_VISIBLE_DEVICES", "LOCAL_RANK"])
def test_a_gpu_assigned_by_a_scheduler_is_kept(three_gpus, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    assert device.resolve_device("cuda") == "cuda" and three_gpus == []


def test_device_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.resolve_device("auto") == "cpu" and device.resolve_device("cpu") == "cpu"
    with pytest.raises(RuntimeError, match="device is 'cuda' but this job sees no GPU"):
        device.resolve_device("cuda")
    with pytest.raises(ValueError, match="got 'tpu'"):
        device.resolve_device("tpu")
