"""Notebooks over the lakehouse: the example notebooks, JupyterLab over the home folder, and
running notebooks headless (what CI does, so a notebook that breaks fails the build).

Notebooks are kept without outputs in the repository (``strip_outputs``); they run on the
``python3`` kernel of the project's environment and read the lake through ``lakehouse_assets.lake``
with the same settings as the pipeline.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

EXAMPLES_DIR = Path(__file__).parent / "examples"
KERNEL_NAME = "python3"


class NotebookError(RuntimeError):
    """A notebook cell raised: the message names the notebook, the cell and the error."""


def examples() -> list[Path]:
    """The example notebooks shipped with the platform, in reading order."""
    return sorted(EXAMPLES_DIR.glob("*.ipynb"))


def cells_with_outputs(notebook: nbformat.NotebookNode) -> list[int]:
    """Indexes of code cells that carry outputs or an execution count."""
    return [
        i
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


def strip_outputs(path: Path) -> bool:
    """Remove outputs and execution counts (the form notebooks are committed in); returns
    whether the file changed."""
    notebook = nbformat.read(path, as_version=4)
    if not cells_with_outputs(notebook):
        return False
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, path)
    return True


def copy_examples(home: Path) -> tuple[list[Path], list[Path]]:
    """Copy the examples into ``<home>/notebooks/examples`` (what JupyterLab opens). A copy the
    user changed is kept, never overwritten. Returns (copied, kept)."""
    target = home / "notebooks" / "examples"
    target.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for source in examples():
        destination = target / source.name
        if destination.exists() and destination.read_bytes() != source.read_bytes():
            kept.append(destination)
            continue
        shutil.copyfile(source, destination)
        copied.append(destination)
    return copied, kept


def check_kernel() -> None:
    """The ``python3`` kernel must be this environment's interpreter (a user-wide kernel of
    another Python would not find the platform's packages)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel as error:
        raise NotebookError(
            "no python3 Jupyter kernel: ipykernel is missing from the project environment (`uv sync`)"
        ) from error
    interpreter = spec.argv[0]
    if (
        interpreter not in ("python", "python3", "{python}")
        and Path(interpreter).resolve() != Path(sys.executable).resolve()
    ):
        raise NotebookError(
            f"the python3 Jupyter kernel runs {interpreter}, not this environment's "
            f"{sys.executable}: remove that kernel spec ({spec.resource_dir}) or "
            "install this one with `python -m ipykernel install --sys-prefix`"
        )


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook: where its copy is, how many cells ran and how long it took."""

    path: Path
    output: Path | None
    cells: int
    seconds: float


def run_notebook(
    path: Path,
    *,
    env: Mapping[str, str],
    output: Path | None = None,
    timeout: int = 900,
    progress: Callable[[str], Any] | None = None,
) -> NotebookRun:
    """Execute every cell in a fresh kernel with ``env`` (e.g. ``LAKEHOUSE_HOME``), in the
    notebook's folder. The executed notebook (with outputs) goes to ``output`` when given, also
    when a cell fails; a failing cell raises NotebookError naming it."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    check_kernel()
    notebook = nbformat.read(path, as_version=4)
    code_cells = [i for i, c in enumerate(notebook.cells) if c.cell_type == "code"]

    failed: list[int] = []  # the code cell (1-based) that raised

    def executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
        if progress:
            progress(f"{path.name}: cell {code_cells.index(cell_index) + 1}/{len(code_cells)}")

    def errored(cell: Any, cell_index: int, execute_reply: Any) -> None:
        failed.append(code_cells.index(cell_index) + 1)

    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=executed,
        on_cell_error=errored,
    )
    started = time.monotonic()
    try:
        client.execute(env=dict(env))
    except CellExecutionError as error:
        where = f"cell {failed[0]}" if failed else "a cell"
        raise NotebookError(
            f"{path.name}: {where} failed: {error.ename}: {error.evalue}"
            + (f" (executed notebook: {output})" if output else "")
        ) from error
    finally:
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, output)
    return NotebookRun(path, output, len(code_cells), time.monotonic() - started)


def lab_command(root: Path, host: str, port: int) -> list[str]:
    """JupyterLab over ``root`` on ``host:port``; no browser, no update or news checks (nothing
    reaches the network). The login token goes in the environment (JUPYTER_TOKEN), not the
    command line other users can read."""
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--ServerApp.ip={host}",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        # Jupyter refuses root unless told; in a container root is the only user there is
        *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),
    ]
