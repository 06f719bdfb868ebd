"""The workflow as a Snakemake module of another workflow (`module clipvqd: snakefile: ...`,
`use rule * from clipvqd`), run from another folder by a Python in which clipvqd is not installed: the
module must find its own package, its schema, environments and packaged files through its own folder,
and its jobs must run that package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.e2e


def _python_without_clipvqd(root: Path) -> Path:
    """A virtual environment that sees this environment's packages (Snakemake, torch, ...) but not an
    installed clipvqd: site-packages comes in through a .pth line, whose own .pth files (the editable
    install's finder among them) are not processed."""
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    site = Path(subprocess.run([str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin" / "python"


def test_host_workflow_uses_clipvqd_as_a_module(tmp_path):
    source = tmp_path / "clipvqd-workflow"  # a copy of the repository, as a host would vendor or clone it
    source.mkdir()
    for item in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / item, source / item)
    for folder in ("workflow", "envs", "clipvqd", "configs"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "tests" / "configs" / "tiny.yaml", source / "tiny.yaml")

    python = _python_without_clipvqd(tmp_path / "venv")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{python.parent}:{env['PATH']}"
    probe = subprocess.run([str(python), "-c", "import snakemake, torch; import clipvqd"], capture_output=True,
                           text=True, timeout=300, env=env, cwd=tmp_path)
    if "No module named 'clipvqd'" not in probe.stderr:
        pytest.skip(f"could not make a Python without clipvqd here: {probe.stderr[-500:] or 'clipvqd imported'}")

    host = tmp_path / "host"
    host.mkdir()
    (host / "Snakefile").write_text(textwrap.dedent(f"""\
        configfile: "{source}/config.yaml"
        configfile: "{source}/tiny.yaml"


        module clipvqd:
            snakefile:
                "{source}/Snakefile"
            config:
                config


        use rule * from clipvqd
        """))
    result = subprocess.run([str(python), "-m", "snakemake", "foundation", "--cores", "2"], cwd=host, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-5000:]

    results = host / "results" / "tiny"  # outputs land in the host's folder
    for path in ("data/train.csv", "clip/conditioner/model.safetensors", "clip/judge/metrics.json",
                 "embeddings/train_images.safetensors", "embeddings/prompts.safetensors", "oracle/metrics.json"):
        assert (results / path).is_file(), path
    assert not (source / "results").exists()
    again = subprocess.run([str(python), "-m", "snakemake", "foundation", "--cores", "1", "-n"], cwd=host, env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]

    # Packaged files are found in the module's folder, not the host's: FFHQ's default prompt file.
    plan = subprocess.run([str(python), "-m", "snakemake", "-n", "--cores", "1", "--configfile",
                           str(source / "configs" / "ffhq.yaml")], cwd=host, env=env, capture_output=True, text=True,
                          timeout=600)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "dataset_prepare" in plan.stdout and str(source / "clipvqd" / "data") in plan.stdout
