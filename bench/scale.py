"""Benchmark jaxem at scale: memory of chunked and streamed EM, online EM
against batch EM, and EM iterations over several (host) devices.

Three parts, each run in fresh subprocesses of this script (``--worker``), so
that peak memory is the part's own and ``XLA_FLAGS`` can differ:

* ``memory``: a full-covariance Gaussian mixture, 10⁷ × 8 × 16 in float32
  (320 MB of data, written to a ``.npy`` file in a temporary directory), fitted
  with ``tol=0`` from a start computed beforehand on a 10⁵-row subsample, in
  three modes, each in its own process: ``memmap-stream`` (``np.load(path,
  mmap_mode="r")`` and ``jaxem.fit(..., stream=True, chunk_size=C)``: host streaming),
  ``device-chunked`` (the data as one JAX array, ``chunk_size=C``: chunks
  visited inside the compiled loop) and ``device-full`` (JAX array, no
  ``chunk_size``). Reported: seconds per EM iteration (slope between two
  ``max_iter`` values) and resident memory, sampled from ``/proc/self/status``
  every 20 ms (``VmRSS``, ``RssAnon``, ``RssFile``) besides the kernel's own
  peak ``VmHWM`` (reset before fitting through ``/proc/self/clear_refs``).
  "Beyond data" is the fit's peak RSS minus the RSS after ``import jax,
  jaxem`` (and backend start-up) minus the data's bytes; the target is under
  2 GiB. Also for a few other chunk sizes (``--chunk-sizes``).
* ``online``: on 10⁶ × 8 × 16 float32 blobs, batch EM (``jaxem.fit``, one
  pass over the data per iteration) against online EM (``online_em``'s
  ``init``/``step`` pair, one jitted epoch of shuffled minibatches per call,
  the exact full-data mean log-likelihood evaluated after each epoch, outside
  the timing), from the same start: passes over the data and wall time to
  come within 0.5% and 0.1% (of ``|ℓ|``) of the batch fit's final
  log-likelihood; minibatches of 10⁴ (with and without Polyak averaging) and
  10³ rows, the default step size. ``fit_online`` itself is run once as a
  cross-check.
* ``devices``: ms per EM iteration on 10⁶ × 8 × 16 float32 with the
  observations split over ``d = 1, 2, 4, 8`` host devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=d``, ``mesh=
  jax.make_mesh((d,), ("data",))``), and for ``d = 1`` also without a mesh.

Run from the repository root::

    python bench/scale.py                 # about 15 minutes on a 2-core CPU
    python bench/scale.py --quick         # smoke run, small sizes (< 2 minutes)
    python bench/scale.py --only memory --chunk-sizes 65536,262144

Results go to ``bench/results/scale-<host>-<backend>-<date>.json`` (or
``--out``); see ``bench/README.md`` for the fields.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import gc
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxem

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _json import jsonable

# gmm.py's helpers (machine, versions, JSON) are imported in the parent only
# (``_gmm_helpers``), so the workers, whose memory is measured, do not load
# scikit-learn.

PARTS = ("memory", "online", "devices")
MODES = ("memmap-stream", "device-chunked", "device-full")
DIM = 8
K = 16
GIB = 2**30
TARGET_BEYOND_DATA = 2 * GIB
THRESHOLDS = (0.005, 0.001)  # relative gaps to the batch fit's final log-likelihood
RESULT_MARKER = "SCALE-RESULT: "
# A tolerance no finite change of the mean log-likelihood reaches: the fit
# stops after its second iteration (the first change, from -inf, is
# infinite), with the same compiled program as tol=0.
STOP_AFTER_TWO_TOL = 1e30
STATUS_FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")


def _gmm_helpers():
    import gmm

    return gmm


def sizes(quick: bool) -> dict[str, Any]:
    """Every size and iteration count of the run."""
    if quick:
        return {
            "memory": {
                "n": 400_000,
                "chunk_size": 2**15,
                "extra_chunk_sizes": [],
                "max_iter": 4,
                "repeats": 1,
                "subsample": 20_000,
            },
            "online": {
                "n": 50_000,
                "batch_max_iter": 30,
                "epochs": 6,
                "variants": [[1_000, False], [1_000, True]],
                "subsample": 20_000,
                "start_seed": 3,
            },
            "devices": {"n": 50_000, "devices": [1, 2], "max_iter": 5, "repeats": 1},
        }
    return {
        "memory": {
            "n": 10_000_000,
            "chunk_size": 2**18,
            "extra_chunk_sizes": [],
            "max_iter": 5,
            "repeats": 1,
            "subsample": 100_000,
        },
        "online": {
            "n": 1_000_000,
            "batch_max_iter": 60,
            "epochs": 25,
            "variants": [[10_000, False], [10_000, True], [1_000, False]],
            "subsample": 100_000,
            "start_seed": 3,
        },
        "devices": {
            "n": 1_000_000,
            "devices": [1, 2, 4, 8],
            "max_iter": 8,
            "repeats": 3,
        },
    }


# ------------------------------------------------------------------ data


def blob_model(dim: int, k: int, seed: int) -> dict[str, np.ndarray]:
    """``K`` well-separated Gaussian blobs in ``D`` dimensions: centres
    ``N(0, 5² I)`` redrawn until every pair is at least 8 apart, covariance
    factors ``0.7 I + 0.5 G / √D`` (standard deviations around one), and
    Dirichlet(5) weights."""
    rng = np.random.default_rng(seed)
    while True:
        centres = rng.normal(scale=5.0, size=(k, dim))
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        if np.min(gaps[np.triu_indices(k, 1)]) >= 8.0:
            break
    factors = 0.7 * np.eye(dim) + 0.5 * rng.standard_normal((k, dim, dim)) / math.sqrt(dim)
    weights = rng.dirichlet(np.full(k, 5.0))
    return {"centres": centres, "factors": factors, "weights": weights}


def write_blobs(path: Path, n: int, seed: int, block: int = 1_000_000) -> dict[str, Any]:
    """``n × D`` float32 draws from :func:`blob_model`, written to ``path``
    (``.npy``) block by block, so the whole array is never in memory."""
    truth = blob_model(DIM, K, seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, DIM))
    for index, start in enumerate(range(0, n, block)):
        rows = min(block, n - start)
        rng = np.random.default_rng([seed, index])
        labels = rng.choice(K, size=rows, p=truth["weights"])
        noise = rng.standard_normal((rows, DIM))
        values = truth["centres"][labels] + np.einsum("nij,nj->ni", truth["factors"][labels], noise)
        out[start : start + rows] = values.astype(np.float32)
    out.flush()
    del out
    return truth


def write_start(data_path: Path, out: Path, subsample: int, seed: int) -> None:
    """Starting parameters from a random subsample (``K`` random rows as seeds,
    nearest-seed assignment, that assignment's weights, means and
    covariances: ``gmm.start_values``), saved to ``out`` (``.npz``)."""
    gmm = _gmm_helpers()
    data = np.load(data_path, mmap_mode="r")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(data.shape[0], size=min(subsample, data.shape[0]), replace=False))
    sub = np.asarray(data[rows], np.float64)
    start = gmm.start_values(sub, K, "full", seed)
    np.savez(out, weights=start.weights, means=start.means, covariances=start.covariances)


def load_start(path: str, dtype=jnp.float32) -> jaxem.models.GaussianMixtureParams:
    saved = np.load(path)
    return jaxem.models.GaussianMixtureParams(
        *(jnp.asarray(saved[name], dtype) for name in ("weights", "means", "covariances"))
    )


# ---------------------------------------------------------------- memory


def read_status() -> dict[str, int]:
    """Bytes of the ``/proc/self/status`` fields in ``STATUS_FIELDS``."""
    found = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in STATUS_FIELDS:
                found[name] = int(value.split()[0]) * 1024  # kB
    return found


def reset_peak() -> bool:
    """Reset the kernel's peak RSS (``VmHWM``) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


class MemorySampler:
    """Samples ``/proc/self/status`` every ``interval`` seconds in a thread and
    keeps the largest ``VmRSS``, ``RssAnon`` and ``RssFile`` seen (each on its
    own) since the last :meth:`reset`. JAX releases the GIL while it computes
    and the streaming loop yields it, so the samples keep coming."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.samples = 0
        self.peak: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            status = read_status()
            with self._lock:
                self.samples += 1
                for name in ("VmRSS", "RssAnon", "RssFile"):
                    self.peak[name] = max(self.peak.get(name, 0), status[name])
            self._stop.wait(self.interval)

    def reset(self) -> dict[str, int]:
        """The peaks since the last reset (and start afresh)."""
        with self._lock:
            peak, self.peak = dict(self.peak), {}
            peak["samples"], self.samples = self.samples, 0
        return peak

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - start, out


def slope(
    run: Callable[[int, float], Any],
    check: Callable[[Any, int], None],
    max_iter: int,
    repeats: int,
    between: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Seconds per iteration from calls of one compiled program
    (``max_iter``) that run 2 and ``max_iter`` iterations: ``run(max_iter,
    tol)`` with ``tol=0`` runs them all, with ``STOP_AFTER_TWO_TOL`` it stops
    after the second (as in ``gmm.py --calibrate-restarts``). One first call
    of each (compilation, caches; ``between`` runs after them), then
    ``repeats`` rounds of both; the best call at each count gives the slope,
    the intercept the per-call cost outside the iterations."""
    m1, m2 = 2, max_iter
    tols = {m1: STOP_AFTER_TWO_TOL, m2: 0.0}
    first, calls, full = {}, {m1: [], m2: []}, None
    for m in (m2, m1):
        first[m], result = timed(lambda m=m: run(max_iter, tols[m]))
        check(result, m)
        full = result if m == m2 else full
    extra = None if between is None else between()
    for _ in range(repeats):
        for m in (m1, m2):
            seconds, result = timed(lambda m=m: run(max_iter, tols[m]))
            check(result, m)
            calls[m].append(seconds)
    best = {m: min(v) for m, v in calls.items()}
    per_iter = (best[m2] - best[m1]) / (m2 - m1)
    return {
        "s_per_iter": per_iter,
        "fixed_s": best[m1] - m1 * per_iter,
        "compile_s": first[m2] - best[m2],
        "first_call_s": {str(m): s for m, s in first.items()},
        "calls_s": {str(m): s for m, s in calls.items()},
        "best_call_s": {str(m): s for m, s in best.items()},
        "iterations": [m1, m2],
        "log_likelihood": float(result.log_likelihood),
        "between": extra,
        "result": full,  # the first full call's result (popped by the caller)
    }


def check_ran(result: Any, m: int) -> None:
    if int(result.num_iter[0]) != m:
        raise RuntimeError(f"ran {int(result.num_iter[0])} iterations, expected {m}")


def memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One mode of the memory part, in a fresh process."""
    mode, chunk_size = spec["mode"], spec["chunk_size"]
    jax.block_until_ready(jnp.zeros(8) + 1)  # start the backend before the baseline
    gc.collect()
    after_import = read_status()
    start_params = load_start(spec["start"])
    if mode == "memmap-stream":
        x = np.load(spec["path"], mmap_mode="r")
        data_bytes = x.nbytes
    else:
        host = np.load(spec["path"])
        x = jnp.asarray(host)
        jax.block_until_ready(x)
        data_bytes = x.nbytes
        del host
    gc.collect()
    after_load = read_status()
    model = jaxem.GaussianMixture(K)
    key = jax.random.key(0)
    options = {} if mode == "device-full" else {"chunk_size": chunk_size}
    if mode == "memmap-stream":
        options["stream"] = True

    def run(m: int, tol: float):
        return jaxem.fit(
            model, x, key=key, init_params=start_params, max_iter=m, tol=tol, **options
        )

    def peaks(sampler: MemorySampler) -> dict[str, int]:
        """The peaks since the last call (kernel's VmHWM and the samples)."""
        hwm = read_status()["VmHWM"]
        peak = sampler.reset()
        peak["VmHWM"] = hwm if reset else None
        peak["peak_rss"] = max(hwm, peak.get("VmRSS", 0)) if reset else peak.get("VmRSS", 0)
        reset_peak()
        return peak

    reset = reset_peak()
    with MemorySampler() as sampler:
        timing = slope(run, check_ran, spec["max_iter"], spec["repeats"], lambda: peaks(sampler))
        end = read_status()
        steady = peaks(sampler)
    timing.pop("result")
    first = timing.pop("between")  # the first calls: compilation and the first pass
    peak = {
        name: max(first.get(name) or 0, steady.get(name) or 0)
        for name in ("VmRSS", "RssAnon", "RssFile", "peak_rss", "samples")
    }
    peak_rss = peak["peak_rss"]
    beyond = peak_rss - after_import["VmRSS"] - data_bytes
    return {
        "mode": mode,
        "chunk_size": None if mode == "device-full" else chunk_size,
        "n": spec["n"],
        "data_bytes": data_bytes,
        "timing": timing,
        "s_per_iter": timing["s_per_iter"],
        "compile_s": timing["compile_s"],
        "status_after_import": after_import,
        "status_after_load": after_load,
        "load_peak_rss": after_load["VmHWM"],
        "status_at_end": end,
        "hwm_reset": reset,
        "sampled_peak": peak,
        "peak_first_calls": first,
        "peak_steady": steady,
        "beyond_data_steady": steady["peak_rss"] - after_import["VmRSS"] - data_bytes,
        "peak_rss": peak_rss,
        "peak_rss_anon": peak.get("RssAnon"),
        "peak_rss_file": peak.get("RssFile"),
        "rss_anon_growth": peak.get("RssAnon", 0) - after_import["RssAnon"],
        "rss_file_growth": peak.get("RssFile", 0) - after_import["RssFile"],
        "beyond_data": beyond,
        "target_beyond_data": TARGET_BEYOND_DATA,
        "passed": beyond < TARGET_BEYOND_DATA,
    }


def run_memory(cfg: dict[str, Any], tmp: Path, out: dict[str, Any]) -> list[dict[str, Any]]:
    path, start = tmp / "blobs-memory.npy", tmp / "start-memory.npz"
    begin = time.perf_counter()
    truth = write_blobs(path, cfg["n"], seed=0)
    write_start(path, start, cfg["subsample"], seed=1)
    out["memory_data"] = {
        "path": str(path),
        "generate_s": time.perf_counter() - begin,
        "bytes": path.stat().st_size,
        "truth_weights": truth["weights"].tolist(),
    }
    runs = [(mode, cfg["chunk_size"]) for mode in MODES]
    for size in cfg["extra_chunk_sizes"]:
        runs += [("memmap-stream", size), ("device-chunked", size)]
    rows = []
    for mode, chunk_size in runs:
        spec = {
            "mode": mode,
            "chunk_size": chunk_size,
            "path": str(path),
            "start": str(start),
            "n": cfg["n"],
            "max_iter": cfg["max_iter"],
            "repeats": cfg["repeats"],
        }
        label = mode + ("" if mode == "device-full" else f" C={chunk_size}")
        print(f"  memory {label}", file=sys.stderr, flush=True)
        rows.append(run_worker("memory", spec) | {"default_chunk_size": cfg["chunk_size"]})
    return rows


# ---------------------------------------------------------------- online


def online_curve(
    method, mean_log_lik, x, start, batch_size: int, average: bool, epochs: int
) -> dict[str, Any]:
    """Online EM from ``start`` (``method``: ``online_em``'s pair), one jitted
    epoch per call (a random permutation, ``⌊n/b⌋`` steps in a ``lax.scan``),
    timed; the exact full-data objective is evaluated after each epoch,
    outside the timing. The epoch is compiled before the timing."""
    n = x.shape[0]
    num_batches = n // batch_size

    @jax.jit
    def epoch(state, x, key):
        order = jax.random.permutation(key, n)[: num_batches * batch_size]

        def visit(state, rows):
            return method.step(state, jnp.take(x, rows, axis=0))

        state, log_liks = lax.scan(visit, state, order.reshape(num_batches, batch_size))
        return state, jnp.mean(log_liks)

    def current(state):
        return state.averaged if average else state.params

    init = jax.jit(method.init)
    keys = jax.random.split(jax.random.key(1), epochs)
    warm, _ = epoch(init(start, x[:batch_size]), x, keys[0])  # compile
    jax.block_until_ready(mean_log_lik(current(warm), x))
    state = jax.block_until_ready(init(start, x[:batch_size]))
    lls, seconds, progressive = [float(mean_log_lik(start, x))], [0.0], []
    for key in keys:
        took, (state, prog) = timed(functools.partial(epoch, state, x, key))
        seconds.append(seconds[-1] + took)
        progressive.append(float(prog))
        lls.append(float(mean_log_lik(current(state), x)))
    return {
        "curve": lls,
        "cumulative_s": seconds,
        "progressive_log_likelihood": progressive,
        "s_per_epoch": seconds[-1] / epochs,
        "final_log_likelihood": lls[-1],
        "nonfinite": bool(state.nonfinite),
    }


def online_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Batch EM and online EM from the same start, on the same data."""
    fit_online = getattr(jaxem, "fit_online", None)
    online_em = getattr(jaxem, "online_em", None)
    source = "jaxem"
    if fit_online is None or online_em is None:
        from jaxem._online import fit_online, online_em

        source = "jaxem._online"
    x = jnp.asarray(np.load(spec["path"]))
    n = x.shape[0]
    start = load_start(spec["start"])
    model = jaxem.GaussianMixture(K)

    @jax.jit
    def mean_log_lik(params, x):
        return (jnp.sum(model.log_prob(params, x)) + model.log_prior(params)) / x.shape[0]

    # Batch EM: the objective of θ_i (i M-steps, i passes) is history[i].
    max_iter = spec["batch_max_iter"]

    def batch_run(m, tol):
        return jaxem.fit(model, x, key=jax.random.key(0), init_params=start, max_iter=m, tol=tol)

    batch_timing = slope(batch_run, check_ran, max_iter, 1)
    batch = batch_timing.pop("result")
    batch_timing.pop("between")
    curve = np.append(np.asarray(batch.history[0], float), float(batch.log_likelihood))
    final = float(batch.log_likelihood)
    start_ll = float(mean_log_lik(start, x))

    def reach(values: np.ndarray, gap: float) -> int | None:
        hit = np.flatnonzero(values >= final - gap * abs(final))
        return int(hit[0]) if hit.size else None

    def batch_seconds(passes: int | None) -> float | None:
        if passes is None:
            return None
        return batch_timing["fixed_s"] + passes * batch_timing["s_per_iter"]

    results = {
        "source": source,
        "n": n,
        "start_log_likelihood": start_ll,
        "batch": {
            "final_log_likelihood": final,
            "max_iter": max_iter,
            "curve": curve.tolist(),
            "s_per_iter": batch_timing["s_per_iter"],
            "timing": batch_timing,
            "reach": {
                str(gap): {"passes": reach(curve, gap), "seconds": batch_seconds(reach(curve, gap))}
                for gap in THRESHOLDS
            },
        },
        "online": [],
    }

    epochs = spec["epochs"]
    for batch_size, average in spec["variants"]:
        # Averaging from the second epoch on: the first epoch's parameters are
        # far from the optimum and would weigh on the average for long.
        method = online_em(
            model, num_observations=n, average=average, average_start=n // batch_size
        )
        curve = online_curve(method, mean_log_lik, x, start, batch_size, average, epochs)
        reach_info = {}
        for gap in THRESHOLDS:
            passes = reach(np.asarray(curve["curve"]), gap)
            reach_info[str(gap)] = {
                "passes": passes,
                "seconds": None if passes is None else curve["cumulative_s"][passes],
            }
        results["online"].append(
            {
                "batch_size": batch_size,
                "average": average,
                "step_size": "default (t + 2)^-0.6",
                "steps_per_epoch": n // batch_size,
                "epochs": epochs,
            }
            | curve
            | {
                "gap_to_batch": (final - curve["final_log_likelihood"]) / abs(final),
                "reach": reach_info,
            }
        )
        print(f"    online batch={batch_size} average={average}: done", file=sys.stderr, flush=True)

    # fit_online itself, once, as a cross-check of the loop above.
    batch_size, average = spec["variants"][0]

    def cross():
        return fit_online(
            model,
            x,
            key=jax.random.key(2),
            batch_size=batch_size,
            num_epochs=epochs,
            average=average,
            init_params=start,
        )

    first_s, _ = timed(cross)
    second_s, result = timed(cross)
    results["fit_online"] = {
        "batch_size": batch_size,
        "average": average,
        "num_epochs": epochs,
        "first_call_s": first_s,
        "call_s": second_s,
        "log_likelihood": float(result.log_likelihood),
        "history": np.asarray(result.history).tolist(),
        "num_steps": result.num_steps,
    }
    return results


def run_online(cfg: dict[str, Any], tmp: Path, out: dict[str, Any]) -> dict[str, Any]:
    path, start = tmp / "blobs-online.npy", tmp / "start-online.npz"
    write_blobs(path, cfg["n"], seed=10)
    write_start(path, start, cfg["subsample"], seed=cfg["start_seed"])
    spec = {"path": str(path), "start": str(start)} | {
        key: cfg[key] for key in ("batch_max_iter", "epochs", "variants")
    }
    print("  online", file=sys.stderr, flush=True)
    return run_worker("online", spec)


# --------------------------------------------------------------- devices


def devices_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """ms per EM iteration with the data split over ``d`` host devices."""
    from jax.sharding import NamedSharding, PartitionSpec

    d = spec["devices"]
    if jax.device_count() != d:
        raise RuntimeError(f"expected {d} devices, got {jax.device_count()}")
    x = jnp.asarray(np.load(spec["path"]))
    start = load_start(spec["start"])
    model = jaxem.GaussianMixture(K)
    key = jax.random.key(0)
    rows = []
    variants = ["mesh"] + (["no mesh"] if d == 1 else [])
    for variant in variants:
        if variant == "mesh":
            mesh = jax.make_mesh((d,), ("data",))
            data = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))
            options = {"mesh": mesh}
        else:
            data, options = x, {}

        def run(m, tol, data=data, options=options):
            return jaxem.fit(
                model, data, key=key, init_params=start, max_iter=m, tol=tol, **options
            )

        timing = slope(run, check_ran, spec["max_iter"], spec["repeats"])
        timing.pop("result")
        timing.pop("between")
        rows.append(
            {
                "devices": d,
                "variant": variant,
                "n": x.shape[0],
                "ms_per_iter": 1e3 * timing["s_per_iter"],
                "fixed_ms": 1e3 * timing["fixed_s"],
                "compile_s": timing["compile_s"],
                "timing": timing,
            }
        )
    return {"rows": rows, "jax_devices": [str(device) for device in jax.devices()]}


def run_devices(cfg: dict[str, Any], tmp: Path, out: dict[str, Any]) -> list[dict[str, Any]]:
    path, start = tmp / "blobs-devices.npy", tmp / "start-devices.npz"
    write_blobs(path, cfg["n"], seed=20)
    write_start(path, start, 100_000, seed=1)
    rows = []
    for d in cfg["devices"]:
        flags = [
            flag
            for flag in os.environ.get("XLA_FLAGS", "").split()
            if not flag.startswith("--xla_force_host_platform_device_count")
        ]
        flags.append(f"--xla_force_host_platform_device_count={d}")
        env = os.environ | {"XLA_FLAGS": " ".join(flags)}
        spec = {
            "devices": d,
            "path": str(path),
            "start": str(start),
            "max_iter": cfg["max_iter"],
            "repeats": cfg["repeats"],
        }
        print(f"  devices d={d}", file=sys.stderr, flush=True)
        result = run_worker("devices", spec, env=env)
        if "error" in result:
            rows.append({"devices": d, "variant": "mesh"} | result)
        else:
            worker = {key: result[key] for key in result if key not in ("rows", "jax_devices")}
            rows += [row | worker | {"XLA_FLAGS": env["XLA_FLAGS"]} for row in result["rows"]]
    reference = next(
        (r for r in rows if r["devices"] == 1 and r["variant"] == "no mesh" and "error" not in r),
        None,
    )
    for row in rows:
        if reference is not None and "error" not in row:
            row["speedup_vs_1_device_no_mesh"] = reference["ms_per_iter"] / row["ms_per_iter"]
    return rows


# -------------------------------------------------------------- plumbing


WORKERS = {"memory": memory_worker, "online": online_worker, "devices": devices_worker}


def run_worker(part: str, spec: dict[str, Any], env: dict[str, str] | None = None) -> dict:
    """Run ``part`` in a fresh process of this script; its result comes back
    as JSON on the last stdout line marked ``RESULT_MARKER``."""
    load = list(os.getloadavg())
    begin = time.perf_counter()
    process = subprocess.run(
        [sys.executable, __file__, "--worker", part, "--spec", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    wall = time.perf_counter() - begin
    info = {"worker_wall_s": wall, "load_average_at_start": load, "load_average_at_end": None}
    info["load_average_at_end"] = list(os.getloadavg())
    for line in reversed(process.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :]) | info
    tail = process.stdout[-2000:]
    print(f"  worker {part} failed (exit {process.returncode})", file=sys.stderr, flush=True)
    return {"error": f"worker exited with {process.returncode}", "stdout_tail": tail} | info


def worker_main(part: str, spec_json: str) -> int:
    result = WORKERS[part](json.loads(spec_json))
    print(RESULT_MARKER + json.dumps(jsonable(result)), flush=True)
    return 0


# ----------------------------------------------------------------- tables


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:.0f}"


def format_memory(rows: list[dict[str, Any]]) -> str:
    lines = [
        "memory: peak resident memory (MiB) and seconds per EM iteration",
        f"{'mode':15} {'chunk':>8} {'s/iter':>7} {'compile':>7} {'import':>7} {'loaded':>7} "
        f"{'data':>6} {'peakRSS':>8} {'peakAnon':>8} {'dFile':>6} {'beyond':>7}  target",
        "-" * 108,
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"{row.get('mode', '?'):15} failed: {row['error']}")
            continue
        lines.append(
            f"{row['mode']:15} {row['chunk_size'] or '':>8} {row['s_per_iter']:7.2f} "
            f"{row['compile_s']:7.1f} {_mib(row['status_after_import']['VmRSS']):>7} "
            f"{_mib(row['status_after_load']['VmRSS']):>7} {_mib(row['data_bytes']):>6} "
            f"{_mib(row['peak_rss']):>8} {_mib(row['peak_rss_anon']):>8} "
            f"{_mib(row['rss_file_growth']):>6} {_mib(row['beyond_data']):>7}  "
            f"{'PASS' if row['passed'] else 'FAIL'} (< 2048)"
        )
    return "\n".join(lines)


def format_online(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"online: failed: {result['error']}\n{result.get('stdout_tail', '')}"
    final = result["batch"]["final_log_likelihood"]
    head = [f"{'passes ' + format(g, '.1%'):>12} {'s':>6}" for g in THRESHOLDS]
    lines = [
        f"online: n = {result['n']}, start log-lik {result['start_log_likelihood']:.4f}, "
        f"batch final {final:.4f} ({result['batch']['max_iter']} iterations)",
        f"{'method':28} {' '.join(head)} {'s/pass':>7} {'final':>9} {'gap':>8}",
        "-" * 88,
    ]

    def cells(reach: dict[str, Any]) -> str:
        out = []
        for gap in THRESHOLDS:
            hit = reach[str(gap)]
            passes = "-" if hit["passes"] is None else str(hit["passes"])
            seconds = "" if hit["seconds"] is None else f"{hit['seconds']:.2f}"
            out.append(f"{passes:>12} {seconds:>6}")
        return " ".join(out)

    batch = result["batch"]
    lines.append(
        f"{'batch EM':28} {cells(batch['reach'])} {batch['s_per_iter']:7.3f} {final:9.4f} "
        f"{0.0:8.1e}"
    )
    for row in result["online"]:
        name = f"online b={row['batch_size']}" + (" avg" if row["average"] else "")
        lines.append(
            f"{name:28} {cells(row['reach'])} {row['s_per_epoch']:7.3f} "
            f"{row['final_log_likelihood']:9.4f} {row['gap_to_batch']:8.1e}"
        )
    cross = result["fit_online"]
    lines.append(
        f"fit_online b={cross['batch_size']} x {cross['num_epochs']} epochs: "
        f"{cross['call_s']:.2f} s (first call {cross['first_call_s']:.2f} s), "
        f"log-lik {cross['log_likelihood']:.4f}  [{result['source']}]"
    )
    return "\n".join(lines)


def format_devices(rows: list[dict[str, Any]]) -> str:
    lines = [
        "devices: ms per EM iteration, observations split over forced host devices",
        f"{'devices':>7} {'variant':8} {'ms/iter':>9} {'fixed ms':>9} {'compile s':>9} "
        f"{'speedup':>8}",
        "-" * 56,
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['devices']:>7} failed: {row['error']}")
            continue
        speedup = row.get("speedup_vs_1_device_no_mesh")
        lines.append(
            f"{row['devices']:>7} {row['variant']:8} {row['ms_per_iter']:9.1f} "
            f"{row['fixed_ms']:9.1f} {row['compile_s']:9.2f} "
            f"{'' if speedup is None else f'{speedup:.2f}':>8}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        metavar="PART",
        help=f"parts to run, comma-separated or repeated: {', '.join(PARTS)}",
    )
    parser.add_argument("--out", type=Path, help="JSON output path")
    parser.add_argument("--chunk-size", type=int, help="the memory part's chunk size")
    parser.add_argument(
        "--chunk-sizes", help="further chunk sizes for the memory part, comma-separated"
    )
    parser.add_argument("--devices", help="device counts for the devices part, comma-separated")
    parser.add_argument("--tmpdir", type=Path, help="where the data files go (default: /tmp)")
    parser.add_argument("--keep-data", action="store_true", help="do not delete the data files")
    parser.add_argument("--worker", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    parts = []
    for item in args.only or []:
        parts += [p.strip() for p in item.split(",") if p.strip()]
    for part in parts:
        if part not in PARTS:
            parser.error(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
    args.parts = [p for p in PARTS if p in parts] if parts else list(PARTS)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.spec)
    gmm = _gmm_helpers()
    cfg = sizes(args.quick)
    if args.chunk_size:
        cfg["memory"]["chunk_size"] = args.chunk_size
    if args.chunk_sizes is not None:
        cfg["memory"]["extra_chunk_sizes"] = [int(c) for c in args.chunk_sizes.split(",") if c]
    if args.devices:
        cfg["devices"]["devices"] = [int(d) for d in args.devices.split(",")]
    started = datetime.datetime.now(datetime.timezone.utc)
    report: dict[str, Any] = {
        "benchmark": "scale",
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "parts": args.parts,
        "machine": gmm.machine_info(),
        "backend": gmm.backend_info(),
        "versions": gmm.versions(),
        "sizes": {part: cfg[part] for part in args.parts} | {"D": DIM, "K": K},
        "dtype": "float32",
        "covariance_type": "full",
    }
    tmp = Path(tempfile.mkdtemp(prefix="jaxem-scale-", dir=args.tmpdir))
    tables = []
    try:
        results: dict[str, Any] = {}
        if "memory" in args.parts:
            results["memory"] = run_memory(cfg["memory"], tmp, report)
            tables.append(format_memory(results["memory"]))
            print(tables[-1] + "\n", flush=True)
        if "online" in args.parts:
            results["online"] = run_online(cfg["online"], tmp, report)
            tables.append(format_online(results["online"]))
            print(tables[-1] + "\n", flush=True)
        if "devices" in args.parts:
            results["devices"] = run_devices(cfg["devices"], tmp, report)
            tables.append(format_devices(results["devices"]))
            print(tables[-1] + "\n", flush=True)
    finally:
        if args.keep_data:
            print(f"data kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report["results"] = results
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["wall_s"] = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    report["load_average_at_end"] = list(os.getloadavg())
    host = socket.gethostname().split(".")[0] or "host"
    date = datetime.date.today().isoformat()
    suffix = "-quick" if args.quick else ""
    out = args.out or gmm.RESULTS_DIR / f"scale-{host}-{jax.default_backend()}-{date}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jsonable(report), indent=1, allow_nan=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
