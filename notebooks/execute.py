"""Execute the notebooks in place, so they are committed with their outputs.

Run from the repository root, with the test extras installed::

    python notebooks/execute.py                      # every notebook
    python notebooks/execute.py 02_generalized_em    # one

Each notebook runs in a fresh kernel of this Python, at full size (the test
suite re-executes them at a small size, without writing them), and is saved
with its outputs and figures. Figures are inline PNGs at a modest resolution
to keep the files small.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tests.test_notebooks import KERNEL_NAME, write_kernel_spec  # noqa: E402


def execute(path: Path, kernel_dir: Path) -> None:
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    notebook = nbformat.read(path, as_version=4)
    spec_manager = KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    manager = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=spec_manager)
    client = NotebookClient(
        notebook,
        km=manager,
        kernel_name=KERNEL_NAME,
        timeout=3600,
        resources={"metadata": {"path": str(HERE)}},
    )
    start = time.perf_counter()
    client.execute(cleanup_kc=True)
    nbformat.write(notebook, path)
    size = path.stat().st_size / 1024
    print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s, {size:.0f} KiB")


def main(names: list[str]) -> None:
    paths = sorted(HERE.glob("*.ipynb"))
    if names:
        paths = [path for path in paths if path.stem in names or path.name in names]
    with tempfile.TemporaryDirectory() as folder:
        kernel_dir = write_kernel_spec(Path(folder))
        for path in paths:
            execute(path, kernel_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
