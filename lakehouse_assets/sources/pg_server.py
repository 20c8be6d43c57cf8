"""A local PostgreSQL server from Debian's binaries (`make postgres-server`) for development,
tests and CI: its own data folder, 127.0.0.1 only, trust authentication for local connections,
``wal_level=logical`` so the CDC capture can read its write-ahead log."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOGICAL = ("wal_level=logical", "max_replication_slots=20", "max_wal_senders=20")


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: run `make postgres-server`")
    return found[-1]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_postgres() -> list[str]:
    """initdb refuses root: run the server as the postgres user then."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.path.exists(p)), "runuser"
    )
    return [runuser, "-u", "postgres", "--"]


def start(folder: Path, port: int, extra_conf: tuple[str, ...] = LOGICAL) -> str:
    """Start (creating it on first use) the server whose data lives in ``folder``; returns the
    superuser's URL."""
    folder.mkdir(parents=True, exist_ok=True)
    data, prefix = folder / "data", _as_postgres()
    if prefix:
        postgres = pwd.getpwnam("postgres")
        os.chown(folder, postgres.pw_uid, postgres.pw_gid)
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            [*prefix, _bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
            check=True,
            capture_output=True,
        )
    options = " ".join(
        [
            f"-p {port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={folder}",
            "-c fsync=off",
            *(f"-c {c}" for c in extra_conf),
        ]
    )
    subprocess.run(
        [*prefix, _bin("pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    deadline = time.monotonic() + 30
    while (
        subprocess.run(
            [_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
        ).returncode
        != 0
    ):
        if time.monotonic() > deadline:
            raise RuntimeError((folder / "log").read_text())
        time.sleep(0.2)
    return f"postgresql://postgres@127.0.0.1:{port}/postgres"


def stop(folder: Path, mode: str = "fast") -> None:
    """Stop the local PostgreSQL server of ``folder`` if it runs."""
    subprocess.run(
        [*_as_postgres(), _bin("pg_ctl"), "-D", str(folder / "data"), "-m", mode, "stop"], capture_output=True
    )


@contextmanager
def temporary_server(extra_conf: tuple[str, ...] = ()) -> Iterator[str]:
    """A throwaway server (fresh folder, free port), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
    try:
        yield start(folder, free_port(), extra_conf)
    finally:
        stop(folder, "immediate")
        shutil.rmtree(folder, ignore_errors=True)
