"""Where a run's training process runs: a local process (the default) or a job on a Ray cluster.

The queue (``pneumo.runs.jobs``) decides which run starts next and when; a backend only starts
it, says whether it is still alive, stops a job still waiting for a place, and reads its log.
A run records its backend in status.json when it is created, so every process that looks after
the queue (each browser session, each worker when it ends, the CLI) treats it the same way.

Ray (``PNEUMO_RAY_ADDRESS=http://HEAD:8265``) is reached over its Jobs REST API: each run is a
Ray job whose entrypoint is the local backend's worker, with the project uploaded as its working
directory and the run id as its submission id, so the same run is never submitted twice. The
runs folder must be one path every node sees (a shared filesystem); the first submission from a
process checks it with a probe job.
"""

from __future__ import annotations

import logging
import os
import secrets
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from pneumo.data.sources import spec_kind
from pneumo.paths import PROJECT_ROOT
from pneumo.runs.store import Run, RunState, RunStore
from pneumo.training.config import TrainConfig

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

LOCAL = "local"
RAY = "ray"
RAY_ADDRESS_VARIABLE = "PNEUMO_RAY_ADDRESS"
INSTALL_CLUSTER = "pip install -r requirements-cluster.txt"
WORKER = [sys.executable, "-m", "pneumo", "worker"]  # the command both backends run, with the run folder
# What a job takes from the app's environment: pneumo's settings, tracking, and quiet TensorFlow.
PASSED_ON = ("PNEUMO_", "MLFLOW_")
JOB_ENVIRONMENT = {"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
# Left out of the working directory Ray uploads to the cluster (.gitignore'd files are left out too).
NOT_UPLOADED = ["models", "artifacts", "tests/oidc/node_modules", ".venv"]


class Unavailable(RuntimeError):
    """The backend cannot take runs now (Ray not installed or unreachable); the message says why."""


class Backend(Protocol):
    name: str

    def slots(self) -> int:
        """How many of this backend's runs may train at once."""

    def start(self, run: Run) -> None:
        """Start the run's worker; the run is marked running before this returns."""

    def ended(self, runs: list[Run]) -> dict[str, str]:
        """Of these running runs, those whose process ended without a word: run id -> why."""

    def cancel(self, run: Run) -> None:
        """Called after the stop flag is set: end a run that has not begun training yet."""

    def log(self, run: Run) -> str:
        """The run's output so far."""

    def describe(self) -> str:
        """Where runs train, in words, for the Train page; ``Unavailable`` when they cannot now."""

    def check(self, store: RunStore, config: TrainConfig) -> None:
        """``Unavailable`` when this backend cannot train this run from this runs folder."""

    def recorded(self) -> dict:
        """What status.json keeps of the backend, so ``of`` finds it again."""


def max_parallel() -> int:
    """Local runs training at once (``PNEUMO_MAX_RUNS``, default 1)."""
    try:
        return max(1, int(os.environ.get("PNEUMO_MAX_RUNS", "1")))
    except ValueError:
        return 1


class LocalBackend:
    """Each run in a process of this machine, started without a shell, in a session of its own."""

    name = LOCAL
    _children: ClassVar[list[subprocess.Popen]] = []  # reaped in ``ended``, so dead workers leave no zombies

    def slots(self) -> int:
        return max_parallel()

    def start(self, run: Run) -> None:
        log = open(run.file("log.txt"), "ab")  # noqa: SIM115 - the child process owns it from here
        process = subprocess.Popen(
            [*WORKER, str(run.path)], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not killed with the UI, not by a Ctrl-C meant for streamlit
            env={**os.environ, **JOB_ENVIRONMENT},
        )
        log.close()
        self._children.append(process)
        run.update_status(state=RunState.RUNNING, pid=process.pid, started=time.time(), error=None)

    def ended(self, runs: list[Run]) -> dict[str, str]:
        return {run.id: "" for run in runs if not self.alive(run)}

    def alive(self, run: Run) -> bool:
        """Whether the run's training process still exists (and is that run's, not a reused pid)."""
        for child in list(self._children):
            if child.poll() is not None:
                self._children.remove(child)
        pid = run.status().get("pid")
        if not pid:
            return False
        proc = Path(f"/proc/{pid}")
        try:
            if proc.exists():
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                return state not in ("Z", "X") and run.id in (proc / "cmdline").read_text()
            os.kill(pid, 0)
            return True
        except (ProcessLookupError, FileNotFoundError):
            return False
        except PermissionError:
            return True

    def cancel(self, run: Run) -> None:
        """Nothing to do: a local worker sees the stop flag from its first batch."""

    def log(self, run: Run) -> str:
        return run.log_text()

    def describe(self) -> str:
        n = self.slots()
        return f"in processes of this machine, {n} run{'s' * (n != 1)} at a time"

    def check(self, store: RunStore, config: TrainConfig) -> None:
        """Nothing to check: this machine sees its own runs folder and data."""

    def recorded(self) -> dict:
        return {"backend": LOCAL}


@dataclass(frozen=True)
class Cluster:
    """What the Train page says about a Ray cluster."""

    nodes: int
    cpus: float
    gpus: float

    def __str__(self) -> str:
        def count(n: float, what: str) -> str:
            return f"{n:g} {what}{'s' * (n != 1)}"
        return f"{count(self.nodes, 'node')}, {count(self.cpus, 'CPU')}, {count(self.gpus, 'GPU')}"


_clients: dict[str, JobSubmissionClient] = {}
_clusters: dict[str, tuple[float, Cluster]] = {}
CLUSTER_FRESH_S = 10.0
_visible: set[tuple[str, str]] = set()  # (address, runs folder) pairs a probe job has seen


class RayBackend:
    """Each run a Ray job (``python -m pneumo worker RUN_DIR``), submitted over the Jobs API."""

    name = RAY

    def __init__(self, address: str) -> None:
        self.address = address.rstrip("/")

    def client(self) -> JobSubmissionClient:
        """One client per address and process (making one costs a round trip); ``Unavailable``
        when Ray is not installed or the cluster does not answer."""
        if self.address not in _clients:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError as exc:
                raise Unavailable(f"{RAY_ADDRESS_VARIABLE} names a Ray cluster, but Ray is not installed here: "
                                  f"{INSTALL_CLUSTER}") from exc
            logging.getLogger("ray").setLevel(logging.WARNING)  # not a line per file it packs for upload
            try:
                _clients[self.address] = JobSubmissionClient(self.address)
            except (OSError, RuntimeError, ValueError) as exc:
                raise Unavailable(f"The Ray cluster at {self.address} does not answer ({exc}).") from exc
        return _clients[self.address]

    def cluster(self) -> Cluster:
        """The cluster's live nodes and their CPUs and GPUs (asked at most every few seconds: every
        browser session's poll looks at the queue)."""
        seen = _clusters.get(self.address)
        if seen and time.monotonic() - seen[0] < CLUSTER_FRESH_S:
            return seen[1]
        self.client()
        from ray.util.state import list_nodes

        try:
            nodes = [n for n in list_nodes(address=self.address, detail=True) if n.state == "ALIVE"]
        except Exception as exc:
            raise Unavailable(f"The Ray cluster at {self.address} does not answer ({exc}).") from exc
        cluster = Cluster(len(nodes), sum(n.resources_total.get("CPU", 0) for n in nodes),
                          sum(n.resources_total.get("GPU", 0) for n in nodes))
        _clusters[self.address] = (time.monotonic(), cluster)
        return cluster

    def recorded(self) -> dict:
        return {"backend": RAY, "ray_address": self.address}

    def describe(self) -> str:
        cpus, gpus = self.per_run()
        return (f"on the Ray cluster at {self.address}: {self.cluster()}; each run asks for {cpus:g} CPU"
                f"{'s' * (cpus != 1)}" + (f" and {gpus:g} GPU{'s' * (gpus != 1)}" if gpus else ""))

    def per_run(self) -> tuple[float, float]:
        """CPUs and GPUs each run asks Ray for: ``PNEUMO_RAY_CPUS`` (default 1) and
        ``PNEUMO_RAY_GPUS`` (default 1 when the cluster has a GPU, else 0)."""
        cpus = float(os.environ.get("PNEUMO_RAY_CPUS") or 1)
        gpus = os.environ.get("PNEUMO_RAY_GPUS")
        return cpus, float(gpus) if gpus else float(self.cluster().gpus > 0)

    def slots(self) -> int:
        """As many runs as the cluster has room for (``PNEUMO_MAX_RUNS`` caps it); Ray places them.
        0 while the cluster does not answer."""
        try:
            cluster, (cpus, gpus) = self.cluster(), self.per_run()
        except Unavailable:
            return 0
        room = [cluster.cpus // cpus] if cpus else []
        room += [cluster.gpus // gpus] if gpus else []
        if os.environ.get("PNEUMO_MAX_RUNS"):
            room.append(max_parallel())
        return max(1, int(min(room, default=cluster.nodes)))

    def check(self, store: RunStore, config: TrainConfig) -> None:
        """``Unavailable`` unless a job on the cluster can find the run's data set and sees the runs
        folder at the same path (once per process and folder: a probe job reads a file written here)."""
        data = Path(config.dataset.partition("?")[0]).expanduser()
        on_disk = spec_kind(config.dataset) in ("csv", "folder") or data.suffix.lower() == ".npz"
        if on_disk and not data.is_absolute():
            raise Unavailable(f"On a Ray cluster the data set must be given as an absolute path that every node "
                              f"sees, not {config.dataset!r}: a job starts in a folder of its own.")
        root = store.root.resolve()
        if (self.address, str(root)) in _visible:
            return
        client = self.client()
        token = secrets.token_hex(8)
        probe = root / f".probe-{token}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe.write_text(token)
            job = client.submit_job(
                entrypoint=shlex.join(["python", "-c", "import pathlib, sys; "
                                       "sys.exit(pathlib.Path(sys.argv[1]).read_text() != sys.argv[2])",
                                       str(probe), token]),
                submission_id=f"pneumo-probe-{token}", entrypoint_num_cpus=0)
            status = self._wait(job)
        except (OSError, RuntimeError) as exc:
            raise Unavailable(f"Could not check that the cluster sees the runs folder {root}: {exc}") from exc
        finally:
            probe.unlink(missing_ok=True)
        if status != "SUCCEEDED":
            raise Unavailable(f"A job on the Ray cluster cannot read the runs folder {root}: it must be a path every "
                              "node sees (a shared filesystem mounted at the same place); see the README, "
                              "\"On a Ray cluster\".")
        _visible.add((self.address, str(root)))

    def _wait(self, job: str, timeout: float = 120.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = str(self.client().get_job_status(job).value)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                return status
            time.sleep(0.2)
        self.client().stop_job(job)
        return "TIMEOUT"

    def start(self, run: Run) -> None:
        """Submit the run as a job; submission ids are the run id (with the resume count after a
        resume), so a retried submission cannot start the run twice."""
        status = run.status()
        job = run.id + (f"-resume-{status['resumed']}" if status.get("resumed") else "")
        cpus, gpus = self.per_run()
        run.update_status(state=RunState.RUNNING, job=job, started=time.time(), error=None, note=None, pid=None)
        environment = {k: v for k, v in os.environ.items() if k.startswith(PASSED_ON)}
        try:
            self.client().submit_job(
                entrypoint=shlex.join(["python", *WORKER[1:], str(run.path)]),
                submission_id=job, entrypoint_num_cpus=cpus, entrypoint_num_gpus=gpus,
                runtime_env={"working_dir": str(PROJECT_ROOT), "excludes": NOT_UPLOADED,
                             "env_vars": {**environment, **JOB_ENVIRONMENT}},
                metadata={"pneumo_run": run.id, "name": run.name[:100]})
        except (OSError, RuntimeError) as exc:
            if self._job(job) is None:  # not a second submission of a job Ray already has
                run.update_status(state=RunState.QUEUED, job=None, started=None,
                                  note=f"waiting: the Ray cluster refused the job ({str(exc)[:200]})")
                raise Unavailable(str(exc)) from exc

    def _job(self, job: str) -> JobDetails | None:
        """The job's details; None when Ray does not know it."""
        try:
            return self.client().get_job_info(job)
        except (OSError, RuntimeError):
            return None

    def ended(self, runs: list[Run]) -> dict[str, str]:
        """Runs whose job Ray reports failed, stopped, finished or no longer knows, with Ray's reason.
        None of them when the cluster does not answer: nothing can be said then."""
        try:
            jobs = {j.submission_id: j for j in self.client().list_jobs()}
        except (Unavailable, OSError, RuntimeError):
            return {}
        ended = {}
        for run in runs:
            job = jobs.get(run.status().get("job"))
            if job is None:
                ended[run.id] = f"The Ray cluster at {self.address} no longer knows its job (restarted?)."
            elif str(job.status.value) not in ("PENDING", "RUNNING"):
                why = job.message or "no reason given"
                ended[run.id] = f"Ray reports its job {str(job.status.value).lower()}: {why}"
        return ended

    def cancel(self, run: Run) -> None:
        """A job still waiting for a place on the cluster is stopped; a training one sees the flag."""
        try:
            job = self._job(run.status().get("job") or "")
            if job is not None and str(job.status.value) == "PENDING" and self.client().stop_job(job.submission_id):
                run.file("stop").unlink(missing_ok=True)
                run.update_status(state=RunState.STOPPED, ended=time.time(),
                                  note="stopped before it began training on the cluster")
        except (Unavailable, OSError, RuntimeError):
            pass  # the job sees the stop flag when it starts

    def log(self, run: Run) -> str:
        """Ray's log of the job; the run folder's log.txt when the cluster does not answer."""
        try:
            return self.client().get_job_logs(run.status().get("job") or run.id)
        except (Unavailable, OSError, RuntimeError):
            return run.log_text()


def chosen() -> Backend:
    """The backend new runs go to: Ray when ``PNEUMO_RAY_ADDRESS`` is set, else local processes."""
    address = os.environ.get(RAY_ADDRESS_VARIABLE, "").strip()
    return RayBackend(address) if address else LocalBackend()


def of(run: Run) -> Backend:
    """The backend a run was created for (runs from before backends were recorded are local)."""
    status = run.status()
    return RayBackend(status["ray_address"]) if status.get("backend") == RAY else LocalBackend()
