"""A fit over two processes equals the fit of all the rows in one.

Two processes on this machine, each with two CPU devices, joined by
``jax.distributed.initialize`` and JAX's CPU collectives (gloo): what the
README's "Many hosts" paragraph describes, with processes standing in for
hosts. Each process holds only its half of the rows (one global array made
with ``jax.make_array_from_process_local_data``); the statistics are summed
across the processes. The worker is ``tests/_multihost_worker.py``.

Every fit starts from the same parameters (the default initialisation run on
all the rows): with the default k-means initialisation run on the
two-process array instead, the fit reached the one-process solution with
its components in another order (the seeds drawn in another order), which
is not what this test is about.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

import jaxem
from tests.conftest import make_blobs

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "_multihost_worker.py"
TIMEOUT = 120.0  # seconds for both processes (about 10 s on a 2-core machine)
NUM_RESTARTS = 4
MAX_ITER = 6


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_environment() -> dict[str, str]:
    """This process's environment (the compile settings and the persistent
    compilation cache of tests/conftest.py included), with two CPU devices
    per process instead of eight."""
    env = dict(os.environ)
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=2".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def logs(directory: Path) -> str:
    return "\n".join(
        f"--- process {i} ---\n{(directory / f'process-{i}.log').read_text()[-4000:]}"
        for i in range(2)
    )


def start_workers(directory: Path) -> list[subprocess.Popen]:
    port, env = free_port(), worker_environment()
    workers = []
    for i in range(2):
        with open(directory / f"process-{i}.log", "w") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), str(i), str(port), str(directory)],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return workers


def wait_for(workers: list[subprocess.Popen], directory: Path) -> None:
    """Both processes exit cleanly, or the test fails with their output: at
    the timeout, or as soon as one fails (the other would wait for it)."""
    deadline = time.monotonic() + TIMEOUT
    try:
        while any(worker.poll() is None for worker in workers):
            failed = [worker.returncode for worker in workers if worker.returncode]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    codes = [worker.returncode for worker in workers]
    assert codes == [0, 0], f"two-process fit failed (exit codes {codes}):\n{logs(directory)}"


def test_a_fit_over_two_processes_equals_the_fit_of_all_rows(tmp_path, x64):
    x = make_blobs(seed=3, n=300, num_components=3)
    np.savez(tmp_path / "data.npz", x=x, num_restarts=NUM_RESTARTS, max_iter=MAX_ITER)
    workers = start_workers(tmp_path)
    try:
        # One process, all the rows, no mesh: the reference (computed while
        # the workers start).
        model = jaxem.GaussianMixture(3)
        starts = jax.vmap(lambda key: model.init(key, x))(
            jaxem.restart_keys(jax.random.key(0), NUM_RESTARTS)
        )
        expected = jaxem.fit(
            model,
            x,
            key=jax.random.key(0),
            init_params=starts,
            num_restarts=NUM_RESTARTS,
            max_iter=MAX_ITER,
            tol=0.0,
        )
    finally:
        wait_for(workers, tmp_path)
    assert np.all(np.isfinite(np.asarray(expected.restart_log_likelihood)))
    expected = {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(expected)
    }

    got = [dict(np.load(tmp_path / f"process-{i}.npz")) for i in range(2)]
    # Both processes hold the same result, bit for bit: the statistics are
    # all-reduced and every device then runs the same M-step on them.
    assert got[0].keys() == got[1].keys()
    for name in got[0]:
        np.testing.assert_array_equal(got[0][name], got[1][name], err_msg=name)
    # ... and it is the one-process fit, up to the order of the sums (float64:
    # the parameters and objectives agree to about 1e-15 after six
    # iterations; 1e-10 leaves room, and a wrong sum is off by far more).
    for case in ("data", "restarts"):
        names = {name.removeprefix(case) for name in got[0] if name.startswith(case + ".")}
        assert names == set(expected), case
        for name, want in expected.items():
            have = got[0][case + name]
            if want.dtype.kind == "f":
                np.testing.assert_allclose(have, want, rtol=1e-10, atol=1e-10, err_msg=case + name)
            else:
                np.testing.assert_array_equal(have, want, err_msg=case + name)
