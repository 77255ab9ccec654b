"""Execute every notebook under ``notebooks/``; a cell that raises fails the test.

The kernel is pinned to the Python running pytest: a kernelspec written to a
temporary folder launches ``sys.executable -m ipykernel_launcher``, and the
kernel-spec manager looks nowhere else. A ``python3`` kernelspec found on
Jupyter's search path (user or system folders) could point to another
interpreter, one without this checkout of jaxem.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient.exceptions import CellExecutionError  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KERNEL_NAME = "python3"
CELL_TIMEOUT_S = 600
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks


def write_kernel_spec(root: Path) -> Path:
    """A folder of kernelspecs under ``root`` holding one ``python3`` spec
    for ``sys.executable`` (also used by ``notebooks/execute.py``)."""
    spec_dir = root / KERNEL_NAME
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python {sys.version_info.major} (pytest)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory) -> Path:
    """A folder of kernelspecs holding one ``python3`` spec for ``sys.executable``."""
    return write_kernel_spec(tmp_path_factory.mktemp("kernels"))


def _execute(notebook, kernel_dir: Path, cwd: Path):
    """Run ``notebook`` in place in a fresh kernel of this Python, from ``cwd``."""
    spec_manager = KernelSpecManager(kernel_dirs=[str(kernel_dir)])
    kernel_manager = AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=spec_manager)
    client = nbclient.NotebookClient(
        notebook,
        km=kernel_manager,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(cwd)}},
    )
    # nbclient shuts down only kernels it created itself unless told to.
    return client.execute(cleanup_kc=True)


def test_kernel_runs_this_python(kernel_dir):
    """The kernel the notebooks run in is the interpreter running the tests."""
    cell = nbformat.v4.new_code_cell("import sys\nprint(sys.executable)\nprint(sys.prefix)")
    notebook = nbformat.v4.new_notebook(cells=[cell])
    executed = _execute(notebook, kernel_dir, NOTEBOOKS)
    executable, prefix = executed.cells[0].outputs[0]["text"].splitlines()
    assert Path(executable).resolve() == Path(sys.executable).resolve()
    assert Path(prefix).resolve() == Path(sys.prefix).resolve()


@pytest.mark.parametrize("name", sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_runs(name, kernel_dir, monkeypatch):
    # Notebooks that work on large data read this and shrink it for the suite.
    monkeypatch.setenv("JAXEM_NOTEBOOK_SMALL", "1")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    try:
        _execute(notebook, kernel_dir, NOTEBOOKS)
    except CellExecutionError as error:
        message = ANSI_ESCAPE.sub("", str(error))
        pytest.fail(f"{name}: a cell raised\n{message}", pytrace=False)


@pytest.mark.parametrize("name", sorted(path.name for path in NOTEBOOKS.glob("*.ipynb")))
def test_notebook_is_committed_executed(name):
    """A reader sees the notebook without running it: every code cell ran (in
    order, without errors) and its figures are in the file
    (``python notebooks/execute.py`` refreshes them)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.get("execution_count") for cell in cells]
    assert all(counts) and counts == sorted(counts), f"{name}: cells not all executed in order"
    outputs = [output for cell in cells for output in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"], f"{name}: an error output"
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert figures, f"{name}: no figure"
