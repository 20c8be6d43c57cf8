"""A Spark standalone cluster on 127.0.0.1, started from the installed PySpark's own launch
classes (``bin/spark-class``: a master and its workers as child processes, nothing downloaded).
For the cluster tests and `lakehouse spark-cluster` (``make demo-cluster``); a real cluster is
only a different ``LAKEHOUSE_SPARK_MASTER``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import httpx

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _megabytes(memory: str) -> int:
    """``512m`` / ``2g`` -> megabytes."""
    number, unit = memory[:-1], memory[-1].lower()
    return int(float(number) * {"m": 1, "g": 1024}[unit])


def spark_home() -> Path:
    """The installed PySpark's folder: it holds bin/spark-class and the jars."""
    import pyspark

    return Path(pyspark.__file__).parent


class StandaloneCluster:
    """A master and ``workers`` workers (``cores`` and ``memory`` each), logs and work folders
    under ``work_dir``. ``with StandaloneCluster(...) as url:`` starts it, waits until every
    worker registered, and stops every process on the way out, also after an error."""

    def __init__(self, work_dir: Path, workers: int = 2, cores: int = 2, memory: str = "2g"):
        self.work_dir, self.workers, self.cores, self.memory = work_dir, workers, cores, memory
        self.processes: list[subprocess.Popen[bytes]] = []
        self.url = ""
        self.ui = ""

    def _spawn(self, name: str, arguments: list[str]) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "SPARK_HOME": str(spark_home()),
            "SPARK_LOCAL_IP": HOST,
            "SPARK_NO_DAEMONIZE": "1",
            # no unauthenticated job submission over REST: applications connect to the master
            "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
        }
        with open(self.work_dir / f"{name}.log", "ab") as log:
            self.processes.append(
                subprocess.Popen(
                    [str(spark_home() / "bin" / "spark-class"), *arguments],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group: stopped with everything it started
                )
            )

    def state(self) -> dict:
        """The master's view: workers, running and completed applications."""
        return httpx.get(f"{self.ui}/json/", timeout=2).json()

    def start(self, timeout: float = 180) -> str:
        """Start the master and the workers; returns the master URL (``spark://127.0.0.1:P``)."""
        port, ui_port = _free_port(), _free_port()
        self.url, self.ui = f"spark://{HOST}:{port}", f"http://{HOST}:{ui_port}"
        master = "org.apache.spark.deploy.master.Master"
        self._spawn("master", [master, "--host", HOST, "--port", str(port), "--webui-port", str(ui_port)])
        self._wait(lambda state: True, timeout, "the master")
        for number in range(self.workers):
            self._spawn(
                f"worker-{number}",
                [
                    "org.apache.spark.deploy.worker.Worker",
                    self.url,
                    "--host",
                    HOST,
                    "--cores",
                    str(self.cores),
                    "--memory",
                    self.memory,
                    "--webui-port",
                    str(_free_port()),
                    "--work-dir",
                    str(self.work_dir / f"worker-{number}"),
                ],
            )
        self._wait(lambda state: state.get("aliveworkers", 0) >= self.workers, timeout, "the workers")
        return self.url

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if any(p.poll() is not None for p in self.processes):
                self.stop()
                raise RuntimeError(
                    f"a Spark cluster process exited while starting {what}: see {self.work_dir}"
                )
            try:
                if ready(self.state()):
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"{what} of the Spark cluster did not start in {timeout:g}s: see {self.work_dir}"
                )
            time.sleep(0.5)

    def app_conf(self) -> dict[str, str]:
        """Session settings for the applications: each takes half the cluster in one-core
        executors, so the engine's session and dbt-spark's (two applications at once during
        gold) both get executors; a standalone master gives the first all cores otherwise."""
        share = max(1, self.workers * self.cores // 2)
        executor_memory = max(256, _megabytes(self.memory) // max(1, self.cores))
        return {
            "spark.cores.max": str(share),
            "spark.executor.cores": "1",
            "spark.executor.memory": f"{executor_memory}m",
        }

    def alive_workers(self) -> int:
        return int(self.state().get("aliveworkers", 0))

    def stop(self) -> None:
        """SIGTERM every process group (workers first), SIGKILL what is left after 20 s."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
