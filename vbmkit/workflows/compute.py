"""Subject-level work on Dask: one task per subject, in this process or on a cluster.

One execution path for every command that runs one task per subject (``vbmkit preprocess`` and
the preprocess stage of ``vbmkit run``), chosen by :class:`ComputeTarget`:

* ``jobs 1`` (no scheduler, no cluster): in this process, without Dask (tests, laptops);
* ``jobs N > 1``: a ``dask.distributed.LocalCluster`` of N worker processes, one thread each;
* ``scheduler ADDRESS``: a running Dask scheduler (``tcp://host:8786``, or a scheduler file);
* ``cluster slurm|pbs|sge``: a cluster started with dask-jobqueue from the study YAML's
  ``compute:`` section (:class:`vbmkit.config.ComputeConfig`), adapting up to ``maximum_jobs``.

Each task writes its own outputs atomically (the worker writes; the client only records), so a
worker that dies mid-subject leaves temporaries but no half-written output. The scheduler
reruns a task whose worker died (``distributed.scheduler.allowed-failures``, 3 by default), and
``retries`` reruns one that raised; a task that still fails comes back as ``("failed", reason)``
and the others go on. Results are taken in the order they finish (``as_completed``).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from vbmkit.config import ComputeConfig
from vbmkit.errors import ConfigError

T = TypeVar("T")
#: ``--cluster`` choice -> dask-jobqueue class name
CLUSTERS = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "sge": "SGECluster"}


@dataclass(frozen=True)
class ComputeTarget:
    """Where subject tasks run (see the module docstring).

    Attributes
    ----------
    jobs : int
        Local worker processes when neither ``scheduler`` nor ``cluster`` is given (1: in process).
    scheduler : str, optional
        Address of a running Dask scheduler, or the path of its scheduler file (JSON).
    cluster : {"slurm", "pbs", "sge"}, optional
        Start a batch cluster with dask-jobqueue from ``config``.
    config : ComputeConfig, optional
        The ``compute:`` section (cores, memory, walltime, queue, ... of the batch jobs).
    """

    jobs: int = 1
    scheduler: str | None = None
    cluster: str | None = None
    config: ComputeConfig | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise ConfigError(f"jobs: expected at least 1 worker; got {self.jobs}")
        if self.scheduler is not None and self.cluster is not None:
            raise ConfigError(f"compute: expected --scheduler or --cluster, not both; got --scheduler "
                              f"{self.scheduler} and --cluster {self.cluster}")
        if self.cluster is not None and self.cluster not in CLUSTERS:
            raise ConfigError(f"cluster: expected one of {', '.join(CLUSTERS)}; got {self.cluster!r}")

    @property
    def in_process(self) -> bool:
        """True when the tasks run one after another in this process (no Dask)."""
        return self.scheduler is None and self.cluster is None and self.jobs <= 1

    @property
    def remote(self) -> bool:
        """True when the workers may run on other machines (their device is resolved there)."""
        return self.scheduler is not None or self.cluster is not None

    def describe(self) -> str:
        """``in process``, ``2 local workers``, ``scheduler tcp://...`` or ``slurm cluster``."""
        if self.scheduler is not None:
            return f"scheduler {self.scheduler}"
        if self.cluster is not None:
            return f"{self.cluster} cluster"
        return "in process" if self.jobs <= 1 else f"{self.jobs} local workers"


def _jobqueue():
    try:
        import dask_jobqueue
    except ImportError as exc:  # a dependency: only a broken installation lacks it
        raise ConfigError(f"cluster: expected the dask-jobqueue package (pip install dask-jobqueue); "
                          f"{exc}") from None
    return dask_jobqueue


def jobqueue_kwargs(kind: str, config: ComputeConfig) -> dict[str, Any]:
    """Keyword arguments of the dask-jobqueue cluster class for ``kind`` from a ``compute:`` section.

    Each worker advertises the resource ``task=1`` and each subject needs it, so a worker runs
    one subject at a time with all of its ``cores / processes`` threads (dask-jobqueue would
    otherwise run that many subjects at once). With ``gpus > 0`` each job runs one worker
    process per GPU; each worker also advertises ``GPU=1`` and its tasks compute on
    ``cuda:<worker index>`` (:func:`worker_device`).
    On SLURM ``--gres=gpu:<gpus>`` is added unless a directive already asks for ``gres``; on PBS
    and SGE the GPU request is site-specific: give it in ``job_extra_directives``.
    """
    if kind not in CLUSTERS:
        raise ConfigError(f"cluster: expected one of {', '.join(CLUSTERS)}; got {kind!r}")
    processes = config.gpus if config.gpus > 0 else config.processes
    if config.cores < processes:
        raise ConfigError(f"compute.cores: expected at least one core per worker process ({processes}); "
                          f"got {config.cores}")
    directives = list(config.job_extra_directives)
    kwargs: dict[str, Any] = {"cores": config.cores, "memory": config.memory, "processes": processes,
                              "walltime": config.walltime, "queue": config.queue, "name": "vbmkit",
                              "job_script_prologue": list(config.job_script_prologue)}
    if config.account is not None:
        kwargs["project" if kind == "sge" else "account"] = config.account
    kwargs["worker_extra_args"] = ["--resources", "task=1,GPU=1" if config.gpus > 0 else "task=1"]
    if config.gpus > 0:
        if kind == "slurm" and not any("gres" in d for d in directives):
            directives.append(f"--gres=gpu:{config.gpus}")
    if config.local_directory is not None:
        kwargs["local_directory"] = config.local_directory
    kwargs["job_extra_directives"] = directives
    return kwargs


def make_jobqueue_cluster(kind: str, config: ComputeConfig):
    """A dask-jobqueue cluster (its scheduler runs in this process; no job is submitted yet)."""
    cls = getattr(_jobqueue(), CLUSTERS[kind] if kind in CLUSTERS else "")
    return cls(**jobqueue_kwargs(kind, config), silence_logs=logging.ERROR, dashboard_address=None)


def job_script(kind: str, config: ComputeConfig) -> str:
    """The batch job script dask-jobqueue submits for ``kind`` (``slurm``, ``pbs``, ``sge``)."""
    cluster = make_jobqueue_cluster(kind, config)
    try:
        return cluster.job_script()
    finally:
        cluster.close()


@contextmanager
def open_client(target: ComputeTarget) -> Iterator[Any]:
    """A ``distributed.Client`` for ``target`` (None when it runs in process); closed on exit.

    A cluster this function started (local or batch) is shut down on exit, its workers with it;
    a running scheduler given by address is left running.
    """
    if target.in_process:
        yield None
        return
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if target.scheduler is not None:
            scheduler = target.scheduler
            try:
                client = (Client(scheduler_file=scheduler, set_as_default=False) if os.path.isfile(scheduler)
                          else Client(scheduler, set_as_default=False, timeout="30s"))
            except OSError as exc:
                raise ConfigError(f"scheduler {scheduler}: expected a running Dask scheduler there; "
                                  f"{type(exc).__name__}: {exc}") from None
        elif target.cluster is not None:
            cluster = make_jobqueue_cluster(target.cluster, target.config or ComputeConfig())
            cluster.adapt(minimum_jobs=0, maximum_jobs=(target.config or ComputeConfig()).maximum_jobs)
            client = Client(cluster, set_as_default=False)
        else:
            cluster = LocalCluster(n_workers=target.jobs, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def worker_device(device: str) -> str:
    """The device a task should use on this worker: ``cuda`` -> ``cuda:<worker index>`` on a multi-GPU node.

    Workers of one job (dask-jobqueue names them ``<job>-0``, ``<job>-1``, ...) or of a
    ``LocalCluster`` (``0``, ``1``, ...) each take the GPU of their index modulo the GPUs
    visible; anything else (``cpu``, ``cuda:1``, one GPU, not in a worker) is returned as it is.
    """
    if device not in ("cuda", "auto"):
        return device
    try:
        import torch
        from distributed import get_worker

        count = torch.cuda.device_count()
        name = str(get_worker().name)
    except (ImportError, ValueError):  # not inside a Dask worker
        return device
    suffix = name.rsplit("-", 1)[-1]
    if count > 1 and suffix.isdigit():
        return f"cuda:{int(suffix) % count}"
    return device


def threads_per_task(target: ComputeTarget) -> int | None:
    """CPU threads each task should use (None: leave torch's default, e.g. on a remote scheduler)."""
    if target.in_process or target.scheduler is not None:
        return None
    if target.cluster is not None:
        cfg = target.config or ComputeConfig()
        return max(1, cfg.cores // (cfg.gpus if cfg.gpus > 0 else cfg.processes))
    return max(1, (os.cpu_count() or 1) // target.jobs)


def run_tasks(func: Callable[..., tuple[str, Any]], items: Sequence[T], *, target: ComputeTarget,
              args: Sequence[Any] = (), key: Callable[[T], str] = str,
              record: Callable[[T, str, Any], None], reason: Callable[[BaseException], str],
              retries: int | None = None) -> None:
    """Run ``func(item, *args)`` for every item on ``target``; ``record(item, status, payload)`` as each ends.

    Parameters
    ----------
    func : callable
        Importable (module-level) function returning ``("done", payload)`` or ``("failed", reason)``.
    items : sequence
        One task each (one subject).
    target : ComputeTarget
    args : sequence
        Further positional arguments of ``func`` (sent once per task; keep them small).
    key : callable
        A unique, readable name of an item (the Dask task key is ``vbmkit-<key>-<run token>``).
    record : callable
        Called in this process with ``(item, status, payload)`` as the tasks finish.
    reason : callable
        Turns the exception of a task that failed for good (worker killed too often,
        unpicklable result, ...) into the reason recorded.
    retries : int, optional
        Reruns of a task that raised (default: ``compute.retries``, else 2).

    Notes
    -----
    Ctrl-C or SIGTERM while waiting cancels the tasks not yet finished and, for a cluster this
    call started, stops its workers before the exception propagates.
    """
    if target.in_process:
        for item in items:
            record(item, *func(item, *args))
        return
    from distributed import as_completed

    retries = retries if retries is not None else (target.config.retries if target.config is not None else 2)
    resources = None
    if target.cluster is not None:  # workers this call started advertise these (jobqueue_kwargs)
        gpus = target.config.gpus if target.config is not None else 0
        resources = {"task": 1, "GPU": 1} if gpus > 0 else {"task": 1}
    run = secrets.token_hex(4)  # two runs on one scheduler never share a task key
    with open_client(target) as client:
        futures = {client.submit(func, item, *args, key=f"vbmkit-{key(item)}-{run}", retries=retries, pure=False,
                                 resources=resources): item for item in items}
        try:
            for fut in as_completed(list(futures), loop=client.loop):
                item = futures[fut]
                try:
                    status, payload = fut.result()
                except Exception as exc:  # the worker died too often, or the result could not come back
                    status, payload = "failed", reason(exc)
                record(item, status, payload)
        except BaseException:
            client.cancel(list(futures))
            raise
