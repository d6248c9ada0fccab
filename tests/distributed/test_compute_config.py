"""The ``compute:`` section and dask-jobqueue: job scripts for SLURM, PBS and SGE (no batch system
and no worker is needed to render them), GPU workers, and one-line errors for wrong keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tests.cli.test_run_cli import _folder
from vbmkit.cli.main import app
from vbmkit.config import ComputeConfig, StudyConfig
from vbmkit.errors import ConfigError
from vbmkit.workflows.compute import (
    ComputeTarget,
    job_script,
    jobqueue_kwargs,
    threads_per_task,
    worker_device,
)

runner = CliRunner()
SECTION = {"cores": 8, "memory": "32GB", "walltime": "02:00:00", "queue": "cpu", "account": "ukb",
           "job_extra_directives": ["--exclusive"], "job_script_prologue": ["source /home/u/vbm/.venv/bin/activate"],
           "processes": 4, "maximum_jobs": 50}


def _lines(script: str, prefix: str) -> list[str]:
    return [line for line in script.splitlines() if line.startswith(prefix)]


def test_slurm_job_script_from_a_compute_section():
    cfg = StudyConfig.model_validate({"inputs": {"t1": ["x.nii"]}, "compute": SECTION}).compute
    script = job_script("slurm", cfg)
    assert _lines(script, "#SBATCH") == ["#SBATCH -J dask-worker", "#SBATCH -p cpu", "#SBATCH -A ukb", "#SBATCH -n 1",
                                         "#SBATCH --cpus-per-task=8", "#SBATCH --mem=30G", "#SBATCH -t 02:00:00",
                                         "#SBATCH --exclusive"]
    assert "source /home/u/vbm/.venv/bin/activate" in script
    worker = script.strip().splitlines()[-1]
    assert "distributed.cli.dask_worker" in worker and "--nworkers 4" in worker and "--nthreads 2" in worker
    assert worker.endswith("--resources task=1")  # one subject at a time per worker, with its 2 threads


def test_pbs_job_script_from_a_compute_section():
    script = job_script("pbs", ComputeConfig(**SECTION))
    assert _lines(script, "#PBS") == ["#PBS -N dask-worker", "#PBS -q cpu", "#PBS -A ukb",
                                      "#PBS -l select=1:ncpus=8:mem=30GB", "#PBS -l walltime=02:00:00",
                                      "#PBS --exclusive"]
    assert "--nworkers 4" in script.strip().splitlines()[-1]


def test_sge_charges_the_account_as_a_project():
    script = job_script("sge", ComputeConfig(**SECTION))
    assert "#$ -P ukb" in _lines(script, "#$") and "#$ -l h_rt=02:00:00" in _lines(script, "#$")


def test_one_worker_per_gpu_with_its_device():
    cfg = ComputeConfig(cores=8, memory="64GB", gpus=2)
    kwargs = jobqueue_kwargs("slurm", cfg)
    assert kwargs["processes"] == 2 and kwargs["worker_extra_args"] == ["--resources", "task=1,GPU=1"]
    assert "--gres=gpu:2" in kwargs["job_extra_directives"]
    assert threads_per_task(ComputeTarget(cluster="slurm", config=cfg)) == 4
    # a site's own gres directive is kept as it is, not doubled
    own = jobqueue_kwargs("slurm", ComputeConfig(gpus=1, job_extra_directives=["--gres=gpu:a100:1"]))
    assert own["job_extra_directives"] == ["--gres=gpu:a100:1"]
    assert worker_device("cpu") == "cpu" and worker_device("cuda:1") == "cuda:1"
    assert worker_device("cuda") == "cuda"  # not inside a Dask worker: left to resolve_device


def test_more_workers_than_cores_is_refused():
    with pytest.raises(ConfigError, match=r"compute.cores: expected at least one core per worker process \(4\); got 2"):
        jobqueue_kwargs("slurm", ComputeConfig(cores=2, processes=4))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("memory", "32", r"expected a size with a unit, e\.g\. '8GB' or '16GiB'; got '32'"),
    ("walltime", "2h", r"expected a walltime HH:MM:SS \(or D-HH:MM:SS\); got '2h'"),
])
def test_compute_values_are_checked(field, value, message):
    with pytest.raises(ValidationError, match=message):
        ComputeConfig(**{field: value})


def test_scheduler_and_cluster_together_are_refused():
    with pytest.raises(ConfigError, match="expected --scheduler or --cluster, not both"):
        ComputeTarget(scheduler="tcp://127.0.0.1:8786", cluster="slurm")
    with pytest.raises(ConfigError, match="cluster: expected one of slurm, pbs, sge; got 'lsf'"):
        ComputeTarget(cluster="lsf")
    assert ComputeTarget(jobs=1).in_process and not ComputeTarget(jobs=2).in_process
    assert ComputeTarget(scheduler="tcp://h:1").describe() == "scheduler tcp://h:1"


def test_a_wrong_compute_key_is_one_line_naming_it(tmp_path):
    path = _folder(tmp_path)
    path.write_text(path.read_text() + "compute:\n  cores: 4\n  walltim: '01:00:00'\n")
    res = runner.invoke(app, ["run", "--check", str(path)])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    assert "compute.walltim" in lines[0] and lines[0].startswith("Error:")


def test_cli_refuses_scheduler_with_cluster(tmp_path):
    res = runner.invoke(app, ["preprocess", str(tmp_path), "--out", str(tmp_path / "o"),
                              "--scheduler", "tcp://127.0.0.1:1", "--cluster", "slurm"])
    assert res.exit_code == 2
    assert "expected --scheduler or --cluster, not both" in res.output
    assert not (tmp_path / "o").exists()
