"""A real PostgreSQL server for tests: Debian's binaries (`make postgres-server`), a fresh data
folder, 127.0.0.1 and a free port, stopped at the end."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: run `make postgres-server`")
    return found[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def postgres_server(extra_conf: tuple[str, ...] = ()):
    """Yields a connection URL for the superuser `postgres` (trust auth on 127.0.0.1 only)."""
    as_root = os.geteuid() == 0  # initdb refuses root: run the server as the postgres user
    folder = Path(tempfile.mkdtemp(prefix="lakehouse-pg-"))
    data = folder / "data"
    port = _free_port()
    runuser = shutil.which("runuser") or next(
        (p for p in ("/usr/sbin/runuser", "/sbin/runuser") if os.path.exists(p)), "runuser")
    prefix = [runuser, "-u", "postgres", "--"] if as_root else []
    if as_root:
        postgres = pwd.getpwnam("postgres")
        os.chown(folder, postgres.pw_uid, postgres.pw_gid)
    subprocess.run([*prefix, _bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                    "--no-sync"], check=True, capture_output=True)
    options = " ".join([f"-p {port}", "-c listen_addresses=127.0.0.1",
                        f"-c unix_socket_directories={folder}", "-c fsync=off",
                        *(f"-c {c}" for c in extra_conf)])
    subprocess.run([*prefix, _bin("pg_ctl"), "-D", str(data), "-o", options, "-l",
                    str(folder / "log"), "-w", "start"], check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run([_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError((folder / "log").read_text())
            time.sleep(0.2)
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, _bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
