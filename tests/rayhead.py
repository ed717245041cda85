"""A real local Ray head for the tests and the bench: 2 CPUs, every port its own (so it never
meets another cluster on the machine), stopped with its whole process group."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

from pneumo.runs import backends

PORTS = ("port", "dashboard-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "metrics-export-port",
         "runtime-env-agent-port", "ray-client-server-port", "node-manager-port", "object-manager-port")


class NoHead(RuntimeError):
    """Ray could not start here; the message says what it printed."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def ray_head(cpus: int = 2, timeout: float = 120) -> Iterator[str]:
    """Start ``ray start --head --block``; yield its dashboard address once the cluster answers."""
    if shutil.which("ray") is None:
        raise NoHead("the ray command is not on PATH: pip install -r requirements-cluster.txt")
    ports = {name: free_port() for name in PORTS}
    command = ["ray", "start", "--head", "--block", "--num-cpus", str(cpus), "--num-gpus", "0",
               "--disable-usage-stats", "--include-dashboard", "true", "--dashboard-host", "127.0.0.1",
               "--object-store-memory", str(80 << 20), *[f"--{name}={port}" for name, port in ports.items()]]
    head = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{ports['dashboard-port']}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if backends.RayBackend(address).cluster().nodes:
                    break
            except backends.Unavailable:
                backends._clients.pop(address, None)  # a client made before the head answered
            if head.poll() is not None:
                raise NoHead(head.stdout.read().decode(errors="replace")[-800:])
            if time.monotonic() > deadline:
                raise NoHead(f"no answer within {timeout:.0f} s")
            time.sleep(1)
        yield address
    finally:  # the head and everything it started share its process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
