"""One process of the two-process fit in ``tests/test_multihost.py``.

Run as ``python tests/_multihost_worker.py PROCESS_ID PORT DIRECTORY`` with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``: two CPU devices per
process, four in all, joined by JAX's distributed runtime and CPU
collectives (gloo). The process reads ``DIRECTORY/data.npz``, keeps its own
half of the rows, fits them as one global array, and writes every leaf of
each fit's result to ``DIRECTORY/process-PROCESS_ID.npz``.
"""

from __future__ import annotations

import os
import sys
import time
import traceback

START = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - START:6.2f} s] {message}", file=sys.stderr, flush=True)


def main(process_id: int, port: int, directory: str) -> None:
    log("started")
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=2,
        process_id=process_id,
        initialization_timeout=60,
    )

    log("initialized")
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    import jaxem

    assert jax.process_count() == 2 and len(jax.devices()) == 4, jax.devices()
    data = np.load(f"{directory}/data.npz")
    x, options = data["x"], dict(key=jax.random.key(0), max_iter=int(data["max_iter"]), tol=0.0)
    half = len(x) // 2
    local_rows = x[process_id * half : (process_id + 1) * half]
    model = jaxem.GaussianMixture(3)
    # The same starting parameters as the reference (computed alike from all
    # the rows): see the test's docstring.
    options["init_params"] = jax.vmap(lambda key: model.init(key, x))(
        jaxem.restart_keys(options["key"], int(data["num_restarts"]))
    )
    results = {}

    # (a) Observations split over all four devices, restarts replicated.
    mesh = jax.make_mesh((4,), ("data",))
    global_x = jax.make_array_from_process_local_data(
        NamedSharding(mesh, PartitionSpec("data")), local_rows
    )
    results["data"] = jaxem.fit(
        model, global_x, mesh=mesh, num_restarts=int(data["num_restarts"]), **options
    )

    log("fit (a) done")
    # (b) Observations split over the processes, restarts over each
    # process's two devices (and chunked on each device).
    mesh = jax.make_mesh((2, 2), ("data", "restarts"))
    mine = {device.process_index for device in mesh.devices[process_id]}
    assert mine == {process_id}, f"each process should hold one row of the mesh:\n{mesh.devices}"
    global_x = jax.make_array_from_process_local_data(
        NamedSharding(mesh, PartitionSpec("data")), local_rows
    )
    results["restarts"] = jaxem.fit(
        model,
        global_x,
        mesh=mesh,
        restart_axis="restarts",
        num_restarts=int(data["num_restarts"]),
        chunk_size=64,
        **options,
    )

    log("fit (b) done")
    # Every field is read in this process as it is (a plain np.asarray),
    # as a user would read it.
    arrays = {
        f"{case}{jax.tree_util.keystr(path)}": np.asarray(leaf)
        for case, result in results.items()
        for path, leaf in jax.tree_util.tree_leaves_with_path(result)
    }
    np.savez(f"{directory}/process-{process_id}.npz", **arrays)
    log("saved")
    jax.distributed.shutdown()
    log("shut down")


if __name__ == "__main__":
    try:
        main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
    except BaseException:
        # Exit at once: a normal exit would wait in the distributed runtime's
        # shutdown for the other process, which may be waiting for this one.
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
