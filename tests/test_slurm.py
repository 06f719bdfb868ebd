"""SLURM for real: a one-node cluster on this machine (Debian's slurm-wlm and munge; munged, slurmctld and
slurmd on 127.0.0.1) runs part of the tiny DAG through `--executor slurm` with profiles/slurm.

The part: world -> conditioner CLIP -> embedding cache and its evaluation, world -> tokenizer -> tokens, then
language-free pretraining (7 jobs, about 3 minutes here; the whole tiny DAG, 26 jobs, would take far longer
through the scheduler's status polling on 2 cores, and test_e2e.py already runs it locally), plus a weights
download from a server on 127.0.0.1, which must run on the submit host (a local rule). The site keys come as
the README says, from SLURM's sbatch variables (SBATCH_PARTITION here), and a rule without an entry in the
profile's set-resources still gets the profile's default runtime and memory. A second test cancels the
pretraining job midway and checks that Snakemake's retry gets more time and resumes from the snapshot.

SLURM's client commands inside a job (the plugin's inner `srun`) drop every SLURM_* variable, SLURM_CONF
included, so the cluster's slurm.conf has to sit at the default /etc/slurm/slurm.conf. The test writes it
only where none exists (or where an earlier run of this test left one) and removes it afterwards, and stops
every daemon it started by the pid in that daemon's own pid file.
"""

from __future__ import annotations

import fcntl
import hashlib
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

from conftest import REPO, copy_workflow
from local_http import LocalFiles

SLURM_CONF = Path("/etc/slurm/slurm.conf")
LOCK = Path(tempfile.gettempdir()) / "clipvqd-test-slurm.lock"
MARK = "# written by clipvqd tests/test_slurm.py (removed when the test ends)"
TARGET = "results/tiny/models/seed=0/clip-vqdiffusion/alpha=0.5/pretrain.safetensors"
# A rule with no entry in the profile's set-resources: it runs on the default resources alone.
UNLISTED_TARGET = "results/tiny/clip/conditioner/metrics.json"
WEIGHTS_TARGET = "downloads/weights/inception.pth"
SITE_PARTITION = "site"  # a second partition of the test cluster, named through SBATCH_PARTITION


def _tool(name: str) -> str | None:
    # The daemons live in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin:/usr/bin")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root: munged runs as user munge and slurmd starts jobs as their owner"
    for tool in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "srun", "scontrol", "sinfo", "scancel"):
        if _tool(tool) is None:
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
    found = subprocess.run([_tool("slurmd"), "-C"], capture_output=True, text=True, timeout=30, check=True).stdout
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
    # One test cluster per machine at a time (there is one /etc/slurm/slurm.conf): a second run of this test,
    # e.g. from another checkout, waits for the first to tear its cluster down.
    lock = open(LOCK, "w")
    deadline = time.monotonic() + 1800
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                lock.close()
                pytest.skip(f"another run of this test held {LOCK} for 30 minutes")
            time.sleep(2)
    try:
        yield from _cluster()
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def _cluster():
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
        subprocess.run([_tool("munged"), f"--key-file={key}", f"--socket={socket_path}", f"--pid-file={pids['munged']}",
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
            f"PartitionName={SITE_PARTITION} Nodes={host} Default=NO MaxTime=INFINITE State=UP",
        ]) + "\n")
        subprocess.run([_tool("slurmctld")], check=True, capture_output=True, text=True, timeout=30)
        subprocess.run([_tool("slurmd")], check=True, capture_output=True, text=True, timeout=30)
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
                 "diffusion_control_finetune", "lafite_train"):
        assert "gpu" in profile["set-resources"][rule] and "slurm_extra" not in profile["set-resources"][rule]
        runtime = str(profile["set-resources"][rule]["runtime"])
        Resources.parse([f"runtime={runtime}"], allow_expressions=True)  # Snakemake accepts it
        # (the cluster test below checks that SLURM receives the value of attempt 1)
        minutes = [eval(runtime, {"__builtins__": {"min": min, "max": max}}, {"attempt": attempt})
                   for attempt in (1, 2, 3)]
        assert minutes[0] >= 60 and minutes[0] < minutes[1] <= minutes[2], (rule, runtime, minutes)
    for key in ("slurm_account", "slurm_partition"):  # site keys stay with the user
        assert key not in profile["default-resources"]


def _parsed_profile() -> dict:
    """profiles/slurm as Snakemake reads it (YTE templates evaluated, dictionaries as key=value lists)."""
    from snakemake.profiles import ProfileConfigFileParser

    with open(REPO / "profiles" / "slurm" / "config.yaml") as stream:
        return ProfileConfigFileParser().parse(stream)


def test_site_keys_come_from_the_environment_without_losing_the_defaults(monkeypatch):
    """The README's way to give account, partition and other site keys: environment variables the profile
    reads. They join the profile's default-resources instead of replacing them (what --default-resources on
    the command line, or another profile's default-resources entry, would do)."""
    for name in ("SBATCH_ACCOUNT", "SBATCH_PARTITION", "SBATCH_QOS", "SBATCH_CONSTRAINT", "CLIPVQD_SLURM_RESOURCES"):
        monkeypatch.delenv(name, raising=False)
    assert _parsed_profile()["default-resources"] == ["runtime=60", "mem_mb=8000", "cpus_per_task=2"]
    monkeypatch.setenv("SBATCH_ACCOUNT", "proj42")
    monkeypatch.setenv("SBATCH_PARTITION", "gpu")
    monkeypatch.setenv("SBATCH_QOS", "normal")
    monkeypatch.setenv("CLIPVQD_SLURM_RESOURCES", "slurm_extra='--mail-type=END --mail-user=me@lab' tmpdir_mb=512")
    defaults = _parsed_profile()["default-resources"]
    assert defaults == ["runtime=60", "mem_mb=8000", "cpus_per_task=2", "slurm_account='proj42'",
                        "slurm_partition='gpu'", "qos='normal'", "slurm_extra='--mail-type=END --mail-user=me@lab'",
                        "tmpdir_mb=512"], defaults
    # Snakemake evaluates each value as Python: text stays text, even a name that is also a builtin.
    from snakemake.resources import Resources

    monkeypatch.setenv("SBATCH_ACCOUNT", "all")
    parsed = Resources.parse(_parsed_profile()["default-resources"], allow_expressions=True)
    value = parsed["slurm_account"].evaluate(wildcards={}, input=[], attempt=1, threads=1, rulename="x",
                                             async_run=None).value
    assert value == "all", value
    monkeypatch.setenv("CLIPVQD_SLURM_RESOURCES", "no-equals-sign")
    with pytest.raises(Exception, match="CLIPVQD_SLURM_RESOURCES: expected key=value"):
        _parsed_profile()


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    """A scratch copy of the workflow, the test profile, and a function running Snakemake on SLURM there."""
    root = tmp_path_factory.mktemp("slurm-dag")
    work = copy_workflow(root / "work")
    profile = _test_profile(root / "profile")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "SBATCH_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    # The site key as the README gives it: SLURM's own variable, read by the profile (not by sbatch alone:
    # without the profile the plugin would pass the default partition explicitly).
    env["SBATCH_PARTITION"] = SITE_PARTITION

    def start(configfiles: list[str], log: Path, targets: tuple[str, ...] = (TARGET,)) -> subprocess.Popen:
        with open(log, "w") as handle:
            return subprocess.Popen([sys.executable, "-m", "snakemake", *targets, "--executor", "slurm", "--profile",
                                     str(profile), "--configfile", *configfiles],
                                    cwd=work, env=env, stdout=handle, stderr=subprocess.STDOUT)

    return work, start


def _submitted(output: str) -> list[tuple[str, str]]:
    """(rule, SLURM job id) of every submission, in order, from Snakemake's log."""
    return [(rule, job) for job, rule in re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", output)]


def _job(job_id: str) -> str:
    return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True).stdout


def test_tiny_dag_part_runs_through_slurm(slurm_run, tmp_path):
    work, start = slurm_run
    weights = os.urandom(4096)  # stands in for the Inception file: only its download is exercised
    started = time.monotonic()
    with LocalFiles({"/inception.pth": weights}) as server:
        (work / "fetch.yaml").write_text(yaml.safe_dump({"weights": {"inception": {
            "fetch": True, "url": server.url("/inception.pth"), "sha256": hashlib.sha256(weights).hexdigest(),
            "size": len(weights)}}}))
        process = start(["tiny.yaml", "fetch.yaml"], tmp_path / "snakemake.log",
                        (TARGET, UNLISTED_TARGET, WEIGHTS_TARGET))
        try:
            process.wait(timeout=1200)
        finally:
            process.kill()
    output = (tmp_path / "snakemake.log").read_text()
    assert process.returncode == 0, output[-6000:]
    elapsed = time.monotonic() - started

    results = work / "results" / "tiny"
    for path in ("data/train.csv", "clip/conditioner/model.safetensors", "embeddings/train_images.safetensors",
                 "tokenizer/model.safetensors", "tokens/train.json",
                 "models/seed=0/clip-vqdiffusion/alpha=0.5/pretrain.safetensors", "logs/seed=0/diffusion_pretrain_alpha=0.5.log"):
        assert (results / path).is_file(), path

    # Every job but the download went through sbatch; the download ran on the submit host (a local rule,
    # as compute nodes often have no internet).
    submitted = dict(_submitted(output))
    assert set(submitted) == {"world_generate", "clip_train_standin", "clip_embed", "clip_evaluate",
                              "tokenizer_train", "tokenizer_tokenize", "diffusion_pretrain"}, output[-3000:]
    assert (work / WEIGHTS_TARGET).read_bytes() == weights and "localrule weights_download:" in output
    # SLURM got the profile's resources (the attempt-1 runtimes) and the site's partition.
    job = _job(submitted["diffusion_pretrain"])
    assert "JobState=COMPLETED" in job and "TimeLimit=1-00:00:00" in job, job  # min(1440 * attempt, 4320)
    assert re.search(r"(MinMemoryNode|mem)=2000M", job), job
    # A rule without set-resources keeps the profile's defaults (runtime 60 min; memory, as this test's
    # profile lowers it, 1000 MB) next to the site key: they were merged, not replaced.
    for rule in ("clip_evaluate", "world_generate"):
        job = _job(submitted[rule])
        assert f"Partition={SITE_PARTITION} " in job, job
        assert re.search(r"(MinMemoryNode|mem)=1000M", job), job
    assert "TimeLimit=01:00:00" in _job(submitted["clip_evaluate"])
    assert "TimeLimit=00:30:00" in _job(submitted["world_generate"])  # its own runtime, the default memory
    print(f"{len(submitted)} jobs through SLURM in {elapsed:.0f} s")


def test_killed_training_job_is_retried_with_more_time_and_resumes(slurm_run, tmp_path):
    """scancel the pretraining job after its first snapshot (what a pre-emption or a node loss looks like to
    Snakemake): the profile's retry resubmits it with twice the runtime, and it continues from the snapshot."""
    work, start = slurm_run
    config = yaml.safe_load((work / "tiny.yaml").read_text())
    config["diffusion"]["pretrain"].update(steps=600, snapshot_every=20, log_every=20)
    (work / "longer.yaml").write_text(yaml.safe_dump(config))  # new settings: only pretraining reruns (~45 s at 13 steps/s here)
    snapshots = work / "results" / "tiny" / "work" / "seed=0" / "diffusion-alpha=0.5-pretrain"
    log = tmp_path / "snakemake.log"
    process = start(["longer.yaml"], log)
    try:
        deadline = time.monotonic() + 600
        while True:
            steps = [int(p.name[6:15]) for p in snapshots.glob("state-*.pt")]
            first = [job for rule, job in _submitted(log.read_text()) if rule == "diffusion_pretrain"]
            if first and any(20 <= step < 600 for step in steps):  # the earlier run's snapshots are 3 and 6
                break
            assert process.poll() is None, log.read_text()[-4000:]
            assert time.monotonic() < deadline, f"no snapshot of the longer run:\n{log.read_text()[-4000:]}"
            time.sleep(0.05)
        subprocess.run(["scancel", first[0]], check=True)
        for _ in range(100):  # SLURM forgets a finished job after MinJobAge: look at it now
            cancelled = _job(first[0])
            if "JobState=CANCELLED" in cancelled:
                break
            time.sleep(0.2)
        process.wait(timeout=900)
    finally:
        process.kill()
    output = log.read_text()
    assert process.returncode == 0, output[-6000:]
    jobs = [job for rule, job in _submitted(output) if rule == "diffusion_pretrain"]
    assert len(jobs) == 2, output[-4000:]
    assert jobs[0] == first[0] and "JobState=CANCELLED" in cancelled and "TimeLimit=1-00:00:00" in cancelled, cancelled
    retry = _job(jobs[1])
    assert "JobState=COMPLETED" in retry and "TimeLimit=2-00:00:00" in retry, retry  # attempt 2: 2880 min
    trainer_log = (work / "results" / "tiny" / "logs" / "seed=0" / "diffusion_pretrain_alpha=0.5.log").read_text()
    resumed = re.search(r"resuming from the snapshot at step (\d+) of 600", trainer_log)
    assert resumed and 20 <= int(resumed.group(1)) < 600, trainer_log[-2000:]
    from clipvqd.checkpoint import load_meta

    assert load_meta(work / "results" / "tiny" / "models" / "seed=0" / "clip-vqdiffusion" / "alpha=0.5"
                     / "pretrain.safetensors")["step"] == 600
