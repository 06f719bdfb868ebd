"""SLURM for real: a one-node cluster on this machine (Debian's slurm-wlm and munge; munged, slurmctld and
slurmd on 127.0.0.1) runs part of the tiny DAG through `--executor slurm` with profiles/slurm.

The part: world -> conditioner CLIP -> embedding cache, world -> tokenizer -> tokens, then language-free
pretraining (6 jobs, about 4 minutes here; the whole tiny DAG, 26 jobs, would take far longer through the
scheduler's status polling on 2 cores, and test_e2e.py already runs it locally).

SLURM's client commands inside a job (the plugin's inner `srun`) drop every SLURM_* variable, SLURM_CONF
included, so the cluster's slurm.conf has to sit at the default /etc/slurm/slurm.conf. The test writes it
only where none exists (or where an earlier run of this test left one) and removes it afterwards, and stops
every daemon it started by the pid in that daemon's own pid file.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SLURM_CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by clipvqd tests/test_slurm.py (removed when the test ends)"
TARGET = "results/tiny/models/clip-vqdiffusion/alpha=0.5/pretrain.safetensors"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root: munged runs as user munge and slurmd starts jobs as their owner"
    for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "scontrol"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install slurm-wlm munge, as .ci/run does)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "there is no munge user (the munge package creates it)"
    if SLURM_CONF.exists() and MARK not in SLURM_CONF.read_text():
        return f"{SLURM_CONF} belongs to a real SLURM installation; the test does not replace it"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed (it is a dependency in pyproject.toml)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_line() -> str:
    """This machine as slurmd sees it: real hostname, CPUs, sockets, cores, threads and memory."""
    found = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
    line = found.splitlines()[0]
    assert line.startswith("NodeName="), found
    return line


def _stop(pid_file: Path, what: str) -> None:
    if not pid_file.is_file():
        return
    try:
        pid = int(pid_file.read_text().split()[0])
    except (ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    print(f"{what} (pid {pid}) ignored SIGTERM and was killed")


@pytest.fixture(scope="module")
def slurm_cluster():
    reason = _why_not()
    if reason:
        pytest.skip(f"no single-node SLURM cluster here: {reason}")
    # Not under pytest's tmp folders: those are private to root, and munged (user munge) must reach its socket.
    root = Path(tempfile.mkdtemp(prefix="clipvqd-slurm-", dir="/tmp"))
    root.chmod(0o755)
    munge = pwd.getpwnam("munge")
    key_dir, run_dir = root / "munge-key", root / "munge-run"
    for folder, mode in ((key_dir, 0o700), (run_dir, 0o755)):
        folder.mkdir()
        os.chown(folder, munge.pw_uid, munge.pw_gid)
        folder.chmod(mode)
    key = key_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chown(key, munge.pw_uid, munge.pw_gid)
    key.chmod(0o400)
    for name in ("state", "spool", "log"):
        (root / name).mkdir()
    pids = {"slurmd": root / "slurmd.pid", "slurmctld": root / "slurmctld.pid", "munged": run_dir / "munged.pid"}
    socket_path = run_dir / "munge.socket.2"
    node = _node_line()
    host = re.match(r"NodeName=(\S+)", node).group(1)
    memory = int(re.search(r"RealMemory=(\d+)", node).group(1))
    try:
        subprocess.run(["munged", f"--key-file={key}", f"--socket={socket_path}", f"--pid-file={pids['munged']}",
                        f"--log-file={key_dir / 'munged.log'}", f"--seed-file={key_dir / 'munged.seed'}"],
                       user="munge", check=True, capture_output=True, text=True, timeout=30)
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SLURM_CONF.write_text("\n".join([
            MARK,
            "ClusterName=clipvqdtest",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={socket_path}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root / 'state'}",
            f"SlurmdSpoolDir={root / 'spool'}",
            f"SlurmctldPidFile={pids['slurmctld']}",
            f"SlurmdPidFile={pids['slurmd']}",
            f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
            # No cgroups in a container, no accounting database: plain process tracking, and the plugin is
            # told to read job states from squeue, which keeps finished jobs for MinJobAge seconds.
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "MinJobAge=300",
            "ReturnToService=2",
            f"{node.split(' UpTime=')[0]} NodeAddr=127.0.0.1 State=UNKNOWN",
            f"PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        ]) + "\n")
        subprocess.run(["slurmctld"], check=True, capture_output=True, text=True, timeout=30)
        subprocess.run(["slurmd"], check=True, capture_output=True, text=True, timeout=30)
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "\n".join(p.read_text()[-1500:] for p in (root / "log").glob("*.log"))
            pytest.fail(f"the test node did not become idle (state '{state}'):\n{logs}")
        yield {"root": root, "memory_mb": memory}
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True, timeout=30)
        _stop(pids["slurmd"], "slurmd")
        _stop(pids["slurmctld"], "slurmctld")
        _stop(pids["munged"], "munged")
        if SLURM_CONF.is_file() and MARK in SLURM_CONF.read_text():
            SLURM_CONF.unlink()
        shutil.rmtree(root, ignore_errors=True)


def _test_profile(out: Path) -> Path:
    """profiles/slurm made to fit this node: no GPUs, at most 2 GB and 1 CPU per job, no conda (conda does
    not run here), and the options a cluster without accounting needs. Runtimes (the attempt expressions)
    and everything else are the real profile's."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile.pop("software-deployment-method", None)
    for resources in profile["set-resources"].values():
        resources.pop("gpu_model", None)
        if "gpu" in resources:
            resources["gpu"] = 0
        if "mem_mb" in resources:
            resources["mem_mb"] = min(resources["mem_mb"], 2000)
        if "cpus_per_task" in resources:
            resources["cpus_per_task"] = 1
    profile["default-resources"].update(mem_mb=1000, cpus_per_task=1)
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    profile.update({
        "jobs": 2, "latency-wait": 5, "retries": 1,
        "slurm-status-command": "squeue",          # no accounting database, so no sacct
        "slurm-no-account": True,
        "slurm-init-seconds-before-status-checks": 2,
        "slurm-keep-successful-logs": True,
    })
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return out


def test_profile_runtimes_grow_with_the_attempt():
    """Every expression-valued resource of profiles/slurm evaluates for attempts 1-3, and a training rule's
    retry (after a time-out or pre-emption) gets at least as much time as the attempt before."""
    from snakemake.resources import Resources

    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    for rule in ("tokenizer_train", "diffusion_pretrain", "diffusion_cfg_finetune", "diffusion_control",
                 "lafite_train"):
        assert "gpu" in profile["set-resources"][rule] and "slurm_extra" not in profile["set-resources"][rule]
        runtime = str(profile["set-resources"][rule]["runtime"])
        Resources.parse([f"runtime={runtime}"], allow_expressions=True)  # Snakemake accepts it
        # (the cluster test below checks that SLURM receives the value of attempt 1)
        minutes = [eval(runtime, {"__builtins__": {"min": min, "max": max}}, {"attempt": attempt})
                   for attempt in (1, 2, 3)]
        assert minutes[0] >= 60 and minutes[0] < minutes[1] <= minutes[2], (rule, runtime, minutes)
    for key in ("slurm_account", "slurm_partition"):  # site keys stay with the user
        assert key not in profile["default-resources"]


def test_tiny_dag_part_runs_through_slurm(slurm_cluster, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for item in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / item, work / item)
    for folder in ("workflow", "envs"):
        shutil.copytree(REPO / folder, work / folder)
    shutil.copy(REPO / "tests" / "configs" / "tiny.yaml", work / "tiny.yaml")
    profile = _test_profile(tmp_path / "profile")
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "snakemake", TARGET, "--executor", "slurm", "--profile", str(profile),
                          "--configfile", "tiny.yaml"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    elapsed = time.monotonic() - started

    results = work / "results" / "tiny"
    for path in ("data/train.csv", "clip/conditioner/model.safetensors", "embeddings/train_images.safetensors",
                 "tokenizer/model.safetensors", "tokens/train.json",
                 "models/clip-vqdiffusion/alpha=0.5/pretrain.safetensors", "logs/diffusion_pretrain_alpha=0.5.log"):
        assert (results / path).is_file(), path

    # Every job went through sbatch, and SLURM got the profile's resources (the attempt-1 runtimes).
    submitted = dict((rule, job) for job, rule in re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", output))
    assert set(submitted) == {"world_generate", "clip_train_standin", "clip_embed", "tokenizer_train",
                              "tokenizer_tokenize", "diffusion_pretrain"}, output[-3000:]
    job = subprocess.run(["scontrol", "show", "job", submitted["diffusion_pretrain"]], capture_output=True,
                         text=True).stdout
    assert "JobState=COMPLETED" in job and "TimeLimit=1-00:00:00" in job, job  # min(1440 * attempt, 4320)
    assert re.search(r"(MinMemoryNode|mem)=2000M", job), job
    print(f"6 jobs through SLURM in {elapsed:.0f} s")
