"""Benchmark jaxem's Gaussian mixture EM against scikit-learn.

Two modes:

* default: jaxem against ``sklearn.mixture.GaussianMixture`` on the same data
  and from the same starting parameters, in float64 and float32, reporting
  milliseconds per EM iteration, the ratio (scikit-learn / jaxem) and whether
  it meets the target; plus jaxem's 8 restarts advanced together (vmap) against
  the same 8 restarts one after the other, and against 8 separate ``fit``
  calls.
* ``--calibrate-restarts``: for a grid of problem sizes, the time of an
  8-restart fit with ``restart_batch_size`` 1, 2, 4 and 8, to set the
  threshold that ``restart_batch_size=None`` uses on a CPU.

Method. Data (a mixture of ``K`` Gaussian blobs) and one set of starting
parameters (``K`` random observations as seeds, a nearest-seed assignment, and
that assignment's weights, means and covariances) are built once per
configuration with numpy in float64, and cast to the dtype under test. Both
libraries start from those parameters (jaxem through ``init_params``,
scikit-learn through ``weights_init``, ``means_init`` and ``precisions_init``)
and run with ``tol=0`` for a fixed number of iterations. Time per iteration is
the slope between two iteration counts ``M1 < M2`` (best of ``--repeats``
calls at each), so initialisation, input checks and the final E-step that both
libraries run after the loop cancel out. The variants compared with each other
(jaxem and scikit-learn; the restart strategies) are called in interleaved
rounds, so a change of machine load touches all of them. jaxem's compile time
is the first call's wall time minus the best steady-state call of the same
shape; the XLA compile events are counted too, so a recompilation between
repeats would show (``recompiles`` in the JSON must be 0). float64 jaxem runs
use ``jax.enable_x64(True)``; scikit-learn gets float64 or float32 arrays, and
the faster (by a short probe) of numpy's default BLAS threads and one thread.

Run from the repository root::

    python bench/gmm.py                       # everything, several minutes
    python bench/gmm.py --quick               # smoke run, small sizes
    python bench/gmm.py --only full,diag --dtype float32 --repeats 3
    python bench/gmm.py --calibrate-restarts  # restart-strategy grid

Results go to ``bench/results/gmm-<host>-<backend>-<date>.json`` (or
``--out``); see ``bench/README.md`` for the fields.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import functools
import importlib.metadata
import itertools
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture
from threadpoolctl import threadpool_info, threadpool_limits

import jaxem

# Private, read only to report which strategy ``restart_batch_size=None`` picks.
from jaxem._engine import auto_restart_batch_size as _auto_restart_batch_size

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _json import jsonable as _jsonable

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
REG_COVAR = 1e-6
NUM_RESTARTS = 8
DTYPES = ("float64", "float32")
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
TRACE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
)
# The calibration's short run: a tolerance no finite change of the mean
# log-likelihood reaches, so every restart stops after its second iteration
# (the first change, from -inf, is infinite). Same compiled program as tol=0.
STOP_AFTER_TWO_TOL = 1e30


# ------------------------------------------------------------ configurations


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmark configuration.

    Attributes:
      name: what ``--only`` selects.
      kind: ``"compare"`` (jaxem against scikit-learn), ``"restarts"``
        (jaxem's restart strategies) or ``"accelerator"`` (jaxem alone, run
        only when JAX's default backend is a GPU).
      n, dim, num_components: ``n × D × K``.
      covariance_type: ``"full"`` or ``"diag"``.
      iterations: ``(M1, M2)``, the two iteration counts of the slope.
      targets: minimum ratio per dtype (absent: no target).
      dtypes: which dtypes to run.
      restart_batch_sizes: for ``"restarts"``, the ``restart_batch_size``
        values timed besides ``None``; must hold ``NUM_RESTARTS`` (the
        batched reference) and ``1`` (the sequential one).
    """

    name: str
    kind: str
    n: int
    dim: int
    num_components: int
    covariance_type: str
    iterations: tuple[int, int]
    targets: dict[str, float]
    dtypes: tuple[str, ...] = DTYPES
    restart_batch_sizes: tuple[int, ...] = (NUM_RESTARTS, 1, 2, 4)

    @property
    def size(self) -> str:
        return f"{self.n}×{self.dim}×{self.num_components}"


def configs(quick: bool) -> list[Config]:
    """The benchmark's configurations (smaller sizes for ``--quick``)."""
    full_targets = {"float64": 6.0, "float32": 10.0}
    diag_targets = {"float64": 6.0, "float32": 8.0}
    restart_targets = {"float64": 1.0, "float32": 1.0}
    if quick:
        return [
            Config("full-small", "compare", 2_000, 2, 8, "full", (5, 25), full_targets),
            Config("full", "compare", 10_000, 16, 16, "full", (2, 8), full_targets),
            Config("diag", "compare", 10_000, 16, 16, "diag", (5, 25), diag_targets),
            Config(
                "restarts",
                "restarts",
                2_000,
                2,
                8,
                "full",
                (5, 105),
                restart_targets,
                restart_batch_sizes=(NUM_RESTARTS, 1),
            ),
            Config("gpu-large", "accelerator", 100_000, 32, 64, "full", (2, 6), {}, ("float32",)),
        ]
    return [
        Config("full-small", "compare", 20_000, 2, 8, "full", (10, 110), full_targets),
        Config("full", "compare", 100_000, 16, 16, "full", (2, 12), full_targets),
        Config("diag", "compare", 100_000, 16, 16, "diag", (5, 45), diag_targets),
        Config("restarts", "restarts", 20_000, 2, 8, "full", (5, 45), restart_targets),
        Config("gpu-large", "accelerator", 1_000_000, 32, 64, "full", (2, 12), {}, ("float32",)),
    ]


# ------------------------------------------------------------ the machine


def machine_info() -> dict[str, Any]:
    """Platform, CPU model, core count, load and BLAS threads."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpu_model": None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
    info["threadpools"] = [
        {key: pool.get(key) for key in ("user_api", "internal_api", "num_threads", "version")}
        for pool in threadpool_info()
    ]
    return info


def backend_info() -> dict[str, Any]:
    return {
        "default_backend": jax.default_backend(),
        "devices": [str(device) for device in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
    }


def versions() -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "numpy", "scikit-learn", "scipy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    found["jaxem"] = jaxem.__version__
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "jaxem"],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=10,
        ).stdout.strip()
        found["jaxem_commit"] = (commit + ("+dirty" if dirty else "")) or None
    return found


# ------------------------------------------------------ data and start values


def make_data(
    n: int, dim: int, num_components: int, covariance_type: str, seed: int = 0
) -> np.ndarray:
    """``(n, D)`` float64 draws from a mixture of ``K`` well-separated-ish blobs.

    Centres are ``N(0, 4² I)``; each blob has a random full covariance (or
    random per-feature scales for ``"diag"``) of order one, and the mixing
    weights are a Dirichlet(5) draw.
    """
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(num_components, 5.0))
    centres = rng.normal(scale=4.0, size=(num_components, dim))
    labels = rng.choice(num_components, size=n, p=weights)
    x = rng.standard_normal((n, dim))
    for k in range(num_components):
        rows = labels == k
        if covariance_type == "diag":
            x[rows] = centres[k] + x[rows] * rng.uniform(0.5, 1.5, size=dim)
        else:
            factor = 0.7 * np.eye(dim) + 0.5 * rng.standard_normal((dim, dim)) / math.sqrt(dim)
            x[rows] = centres[k] + x[rows] @ factor.T
    return x


@dataclasses.dataclass(frozen=True)
class StartValues:
    """Starting parameters in float64: ``weights (K,)``, ``means (K, D)``,
    ``covariances`` (``(K, D, D)`` full, ``(K, D)`` diag) and their
    ``precisions`` (scikit-learn's ``precisions_init``)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions: np.ndarray


def start_values(
    x: np.ndarray, num_components: int, covariance_type: str, seed: int
) -> StartValues:
    """``K`` random observations as seeds, each row assigned to its nearest
    seed, and the weights, means and covariances (plus ``REG_COVAR``) of that
    assignment: what both libraries start from."""
    rng = np.random.default_rng(seed)
    n, dim = x.shape
    seeds = x[rng.choice(n, num_components, replace=False)]
    distances = -2.0 * (x @ seeds.T) + np.sum(seeds * seeds, axis=1)  # + |x|², constant per row
    labels = np.argmin(distances, axis=1)
    counts = np.bincount(labels, minlength=num_components).astype(float)
    counts = np.maximum(counts, 1.0)
    weights = counts / counts.sum()
    means = np.zeros((num_components, dim))
    np.add.at(means, labels, x)
    means /= counts[:, None]
    if covariance_type == "full":
        covariances = np.empty((num_components, dim, dim))
        for k in range(num_components):
            centred = x[labels == k] - means[k]
            covariances[k] = centred.T @ centred / counts[k] + REG_COVAR * np.eye(dim)
        precisions = np.linalg.inv(covariances)
        precisions = 0.5 * (precisions + np.swapaxes(precisions, -1, -2))
    else:
        squares = np.zeros((num_components, dim))
        np.add.at(squares, labels, np.square(x - means[labels]))
        covariances = squares / counts[:, None] + REG_COVAR
        precisions = 1.0 / covariances
    return StartValues(weights, means, covariances, precisions)


def jaxem_params(starts: Sequence[StartValues], dtype: str) -> jaxem.models.GaussianMixtureParams:
    """jaxem parameters in ``dtype``: one set, or stacked over restarts."""

    def leaf(name: str) -> jax.Array:
        values = [getattr(s, name) for s in starts]
        array = values[0] if len(values) == 1 else np.stack(values)
        return jnp.asarray(array.astype(dtype))

    return jaxem.models.GaussianMixtureParams(leaf("weights"), leaf("means"), leaf("covariances"))


# ------------------------------------------------------------------ timing


class CompileMonitor:
    """Counts XLA backend compilations, and seconds spent tracing, lowering
    and compiling, while active (``jax.monitoring`` events)."""

    def __init__(self) -> None:
        self.compilations = 0
        self.compile_seconds = 0.0
        self.trace_seconds = 0.0

    def _listener(self, event: str, duration: float, **_: Any) -> None:
        if event == BACKEND_COMPILE_EVENT:
            self.compilations += 1
            self.compile_seconds += duration
        elif event in TRACE_EVENTS:
            self.trace_seconds += duration

    def __enter__(self) -> CompileMonitor:
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc: Any) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)


@dataclasses.dataclass
class Slope:
    """Per-iteration time from calls with ``M1`` and ``M2`` iterations.

    Attributes:
      ms_per_iter: ``(best(M2) − best(M1)) / (M2 − M1)`` in milliseconds.
      fixed_ms: the intercept, ``best(M1) − M1 · ms_per_iter``: per-call cost
        outside the iterations (input checks, dispatch, the final E-step).
      best_call_s: ``{M: best steady-state wall seconds}``.
      first_call_s: ``{M: wall seconds of the first call}``.
      calls_s: ``{M: every steady-state call's seconds}``.
      compile_s: mean over ``M`` of first call minus best call (jaxem only).
      xla_compile_s: XLA backend compile seconds during the first calls.
      trace_s: tracing and lowering seconds during the first calls.
      compilations: XLA compilations during the first calls.
      recompiles: XLA compilations during the steady-state calls (want 0).
    """

    ms_per_iter: float
    fixed_ms: float
    best_call_s: dict[int, float]
    first_call_s: dict[int, float]
    calls_s: dict[int, list[float]]
    compile_s: float | None = None
    xla_compile_s: float | None = None
    trace_s: float | None = None
    compilations: int | None = None
    recompiles: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("best_call_s", "first_call_s", "calls_s"):
            out[key] = {str(m): v for m, v in out[key].items()}
        return out


@dataclasses.dataclass(frozen=True)
class Runner:
    """One timed variant.

    Attributes:
      run: ``run(M)`` runs ``M`` EM iterations and blocks until done.
      check: ``check(result, M)`` raises unless the call ran as intended; it
        runs outside the timed region.
      context: entered around every call (dtype mode, BLAS threads), outside
        the timed region.
      compiles: whether to report compile time and count recompilations.
    """

    run: Callable[[int], Any]
    check: Callable[[Any, int], None]
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    compiles: bool = True


def measure_slopes(
    runners: dict[str, Runner], iterations: tuple[int, int], repeats: int
) -> dict[str, Slope]:
    """Time every runner at ``M1`` and ``M2`` iterations, interleaved.

    First one call of each runner at each ``M`` (compilation, caches), then
    ``repeats`` rounds; in each round every runner is called at ``M1`` and
    ``M2``, with the runners' order rotated from round to round, so a change
    of machine load affects all variants alike. The best call at each ``M``
    gives the slope.
    """
    m1, m2 = iterations
    names = list(runners)
    first: dict[str, dict[int, float]] = {name: {} for name in names}
    calls: dict[str, dict[int, list[float]]] = {name: {m1: [], m2: []} for name in names}
    first_monitors = {name: CompileMonitor() for name in names}
    steady_monitors = {name: CompileMonitor() for name in names}

    def timed(name: str, m: int, monitor: CompileMonitor) -> float:
        runner = runners[name]
        with runner.context(), monitor:
            start = time.perf_counter()
            result = runner.run(m)
            seconds = time.perf_counter() - start
            runner.check(result, m)
        return seconds

    for name in names:
        for m in (m1, m2):
            first[name][m] = timed(name, m, first_monitors[name])
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            for m in (m1, m2):
                calls[name][m].append(timed(name, m, steady_monitors[name]))
    slopes = {}
    for name in names:
        best = {m: min(values) for m, values in calls[name].items()}
        per_iter = (best[m2] - best[m1]) / (m2 - m1)
        slope = Slope(
            ms_per_iter=1e3 * per_iter,
            fixed_ms=1e3 * (best[m1] - m1 * per_iter),
            best_call_s=best,
            first_call_s=first[name],
            calls_s=calls[name],
        )
        if runners[name].compiles:
            monitor = first_monitors[name]
            slope.compile_s = float(np.mean([first[name][m] - best[m] for m in (m1, m2)]))
            slope.xla_compile_s = monitor.compile_seconds
            slope.trace_s = monitor.trace_seconds
            slope.compilations = monitor.compilations
            slope.recompiles = steady_monitors[name].compilations
        slopes[name] = slope
    return slopes


def x64(dtype: str) -> contextlib.AbstractContextManager:
    """``jax.enable_x64`` for float64 runs (explicitly off for float32)."""
    return jax.enable_x64(dtype == "float64")


def check_jaxem(result: jaxem.FitResult, m: int) -> None:
    num_iter = np.asarray(result.num_iter)
    if not np.all(num_iter == m):
        raise RuntimeError(f"jaxem ran {num_iter.tolist()} iterations, expected {m}")
    if bool(np.any(np.asarray(result.nonfinite))):
        raise RuntimeError("jaxem reported a non-finite objective")


def check_jaxem_all(results: list[jaxem.FitResult], m: int) -> None:
    for result in results:
        check_jaxem(result, m)


def check_sklearn(model: SklearnGaussianMixture, m: int) -> None:
    if model.n_iter_ != m:
        raise RuntimeError(f"scikit-learn ran {model.n_iter_} iterations, expected {m}")


def jaxem_runner(
    model: jaxem.GaussianMixture,
    x: jax.Array,
    params: jaxem.models.GaussianMixtureParams,
    *,
    num_restarts: int = 1,
    restart_batch_size: int | None = None,
) -> Callable[[int], jaxem.FitResult]:
    """``run(M)``: ``jaxem.fit`` from ``params`` with ``max_iter=M, tol=0``."""
    key = jax.random.key(0)

    def run(m: int) -> jaxem.FitResult:
        result = jaxem.fit(
            model,
            x,
            key=key,
            init_params=params,
            num_restarts=num_restarts,
            restart_batch_size=restart_batch_size,
            max_iter=m,
            tol=0.0,
        )
        return jax.block_until_ready(result)

    return run


def sklearn_runner(
    x: np.ndarray, start: StartValues, covariance_type: str, dtype: str
) -> Callable[[int], SklearnGaussianMixture]:
    """``run(M)``: scikit-learn's fit from ``start`` with ``max_iter=M, tol=0``."""

    def run(m: int) -> SklearnGaussianMixture:
        model = SklearnGaussianMixture(
            n_components=start.weights.shape[0],
            covariance_type=covariance_type,
            tol=0.0,
            reg_covar=REG_COVAR,
            max_iter=m,
            init_params="random_from_data",  # cheapest; overridden by the *_init below
            weights_init=start.weights.astype(dtype),
            means_init=start.means.astype(dtype),
            precisions_init=start.precisions.astype(dtype),
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x)
        return model

    return run


def default_blas_threads() -> int:
    """The BLAS thread count numpy (and so scikit-learn) would use."""
    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts, default=1)


def limit_blas_threads(threads: int | None) -> contextlib.AbstractContextManager:
    """Limit BLAS to ``threads`` threads inside the block (``None``: as is)."""
    if threads is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def choose_blas_threads(
    run: Callable[[int], Any], m: int, forced: int | None
) -> tuple[int, dict[str, float]]:
    """scikit-learn's BLAS threads: ``forced``, or the faster of the default
    and one thread on a probe call (best of two) with ``m`` iterations.

    On a shared or oversubscribed machine, OpenBLAS's threads can make every
    small matrix product many times slower than on one thread; choosing by
    probe keeps the baseline at its best, so ratios are conservative.
    """
    if forced is not None:
        return forced, {}
    probe = {}
    for threads in sorted({default_blas_threads(), 1}, reverse=True):
        with limit_blas_threads(threads):
            run(m)
            seconds = []
            for _ in range(2):
                start = time.perf_counter()
                run(m)
                seconds.append(time.perf_counter() - start)
        probe[str(threads)] = min(seconds)
    return int(min(probe, key=probe.get)), probe


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _jaxem_model(config: Config) -> jaxem.GaussianMixture:
    return jaxem.GaussianMixture(
        config.num_components, covariance_type=config.covariance_type, reg_covar=REG_COVAR
    )


def run_compare(
    config: Config, x64_data: np.ndarray, repeats: int, blas_threads: int | None = None
) -> list[dict[str, Any]]:
    """jaxem against scikit-learn, one row per dtype.

    scikit-learn runs with ``blas_threads`` BLAS threads, or (``None``) with
    whichever of the default and one thread a probe finds faster.
    """
    start = start_values(x64_data, config.num_components, config.covariance_type, seed=1)
    model = _jaxem_model(config)
    rows = []
    for dtype in config.dtypes:
        with x64(dtype):
            x = jnp.asarray(x64_data.astype(dtype))
            params = jaxem_params([start], dtype)
        x_numpy = x64_data.astype(dtype)
        run_sklearn = sklearn_runner(x_numpy, start, config.covariance_type, dtype)
        _log(f"  {config.name} {dtype}: probing scikit-learn's BLAS threads")
        threads, probe = choose_blas_threads(run_sklearn, config.iterations[0], blas_threads)
        _log(f"  {config.name} {dtype}: jaxem and scikit-learn ({threads} BLAS threads)")
        slopes = measure_slopes(
            {
                "jaxem": Runner(
                    jaxem_runner(model, x, params), check_jaxem, functools.partial(x64, dtype)
                ),
                "scikit-learn": Runner(
                    run_sklearn,
                    check_sklearn,
                    functools.partial(limit_blas_threads, threads),
                    compiles=False,
                ),
            },
            config.iterations,
            repeats,
        )
        del x
        ours, theirs = slopes["jaxem"], slopes["scikit-learn"]
        working_dtype = str(run_sklearn(1).means_.dtype)
        rows.append(
            _row(
                config,
                dtype,
                jaxem=ours.to_json(),
                baseline_name="scikit-learn",
                baseline=theirs.to_json()
                | {
                    "working_dtype": working_dtype,
                    "blas_threads": threads,
                    "blas_thread_probe_s": probe,
                },
                ratio=theirs.ms_per_iter / ours.ms_per_iter,
                target=config.targets.get(dtype),
            )
        )
    return rows


def run_restarts(config: Config, x64_data: np.ndarray, repeats: int) -> list[dict[str, Any]]:
    """8 restarts: vmapped, in groups, one after the other, as separate fits,
    and what ``restart_batch_size=None`` picks; one row per dtype."""
    starts = [
        start_values(x64_data, config.num_components, config.covariance_type, seed=1 + r)
        for r in range(NUM_RESTARTS)
    ]
    model = _jaxem_model(config)
    rows = []
    for dtype in config.dtypes:
        with x64(dtype):
            x = jnp.asarray(x64_data.astype(dtype))
            batched_params = jaxem_params(starts, dtype)
            singles = [jaxem_runner(model, x, jaxem_params([s], dtype)) for s in starts]
            auto = _auto_restart_batch_size(model, x, NUM_RESTARTS)
        context = functools.partial(x64, dtype)
        runners, sizes = {}, {}
        for batch_size in (*config.restart_batch_sizes, None):
            run = jaxem_runner(
                model,
                x,
                batched_params,
                num_restarts=NUM_RESTARTS,
                restart_batch_size=batch_size,
            )
            label = "auto" if batch_size is None else f"batch={batch_size}"
            runners[label] = Runner(run, check_jaxem, context)
            sizes[label] = auto if batch_size is None else batch_size

        def separate(m: int, singles=singles) -> list[jaxem.FitResult]:
            return [run(m) for run in singles]

        runners["separate"] = Runner(separate, check_jaxem_all, context)
        sizes["separate"] = None
        _log(f"  {config.name} {dtype}: {', '.join(runners)}")
        slopes = measure_slopes(runners, config.iterations, repeats)
        del x, singles
        variants = {
            label: {"restart_batch_size": sizes[label]} | slope.to_json()
            for label, slope in slopes.items()
        }
        # The target compares what a user gets, one fit of 8 restarts with the
        # automatic strategy, against fitting the 8 starts one after another.
        batched, sequential = slopes["auto"], slopes["separate"]
        rows.append(
            _row(
                config,
                dtype,
                jaxem=variants["auto"],
                baseline_name="8 separate jaxem fits",
                baseline=variants["separate"],
                ratio=sequential.ms_per_iter / batched.ms_per_iter,
                target=config.targets.get(dtype),
            )
            | {"num_restarts": NUM_RESTARTS, "auto_restart_batch_size": auto, "variants": variants}
        )
    return rows


def run_accelerator(config: Config, x64_data: np.ndarray, repeats: int) -> list[dict[str, Any]]:
    """jaxem alone at a size meant for a GPU (scikit-learn is not run)."""
    start = start_values(x64_data, config.num_components, config.covariance_type, seed=1)
    model = _jaxem_model(config)
    rows = []
    for dtype in config.dtypes:
        _log(f"  {config.name} {dtype}: jaxem")
        with x64(dtype):
            x = jnp.asarray(x64_data.astype(dtype))
            params = jaxem_params([start], dtype)
        runner = Runner(jaxem_runner(model, x, params), check_jaxem, functools.partial(x64, dtype))
        ours = measure_slopes({"jaxem": runner}, config.iterations, repeats)["jaxem"]
        del x
        rows.append(
            _row(config, dtype, jaxem=ours.to_json(), baseline_name=None, baseline=None)
            | {"note": "jaxem only: scikit-learn is not run at this size"}
        )
    return rows


def _row(
    config: Config,
    dtype: str,
    *,
    jaxem: dict[str, Any],
    baseline_name: str | None,
    baseline: dict[str, Any] | None,
    ratio: float | None = None,
    target: float | None = None,
) -> dict[str, Any]:
    return {
        "config": config.name,
        "kind": config.kind,
        "n": config.n,
        "D": config.dim,
        "K": config.num_components,
        "covariance_type": config.covariance_type,
        "dtype": dtype,
        "iterations": list(config.iterations),
        "jaxem": jaxem,
        "baseline_name": baseline_name,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "passed": None if target is None or ratio is None else bool(ratio >= target),
    }


def run_benchmark(
    selected: list[Config], repeats: int, blas_threads: int | None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for config in selected:
        if config.kind == "accelerator" and jax.default_backend() != "gpu":
            _log(f"{config.name}: skipped (backend is {jax.default_backend()}, not gpu)")
            rows.append(
                _row(config, "float32", jaxem={}, baseline_name=None, baseline=None)
                | {"skipped": f"needs a GPU; default backend is {jax.default_backend()}"}
            )
            continue
        _log(f"{config.name} ({config.covariance_type} {config.size})")
        data = make_data(config.n, config.dim, config.num_components, config.covariance_type)
        if config.kind == "compare":
            rows.extend(run_compare(config, data, repeats, blas_threads))
        elif config.kind == "restarts":
            rows.extend(run_restarts(config, data, repeats))
        else:
            rows.extend(run_accelerator(config, data, repeats))
    return rows


# -------------------------------------------------------------- calibration


def calibration_grid(quick: bool) -> list[tuple[str, int, int, int]]:
    """``(covariance_type, n, D, K)`` cells."""
    if quick:
        sizes = itertools.product((1_000, 10_000), (2, 8), (2, 8))
    else:
        sizes = itertools.product((1_000, 10_000, 100_000), (2, 8, 16), (2, 8, 16))
    sizes = list(sizes)
    return [(ctype, n, d, k) for ctype in ("full", "diag") for (n, d, k) in sizes]


def calibration_iterations(n: int, dim: int, num_components: int, covariance_type: str) -> int:
    """Iterations of the long run, so that it takes about half a second.

    From a rough cost model of one iteration of the 8 restarts on a 2-core
    CPU: about a nanosecond per ``n · K · (w + 4D + 16)`` (``w = D²`` for full
    covariances, ``D`` for diag), plus 0.2 ms of per-restart overhead.
    """
    width = dim * dim if covariance_type == "full" else dim
    seconds = NUM_RESTARTS * (1e-9 * n * num_components * (width + 4 * dim + 16) + 2e-4)
    return int(min(max(round(0.5 / seconds), 8), 200))


def calibrate_cell(
    covariance_type: str,
    n: int,
    dim: int,
    num_components: int,
    *,
    repeats: int,
    batch_sizes: Sequence[int],
    dtype: str,
) -> dict[str, Any]:
    """ms per iteration of an 8-restart fit for each ``restart_batch_size``.

    Each variant compiles once (``max_iter=M``); the slope is between a run
    stopped after two iterations (``tol=1e30``) and a full run (``tol=0``).
    """
    m = calibration_iterations(n, dim, num_components, covariance_type)
    data = make_data(n, dim, num_components, covariance_type)
    starts = [
        start_values(data, num_components, covariance_type, seed=1 + r) for r in range(NUM_RESTARTS)
    ]
    model = jaxem.GaussianMixture(
        num_components, covariance_type=covariance_type, reg_covar=REG_COVAR
    )
    key = jax.random.key(0)
    with x64(dtype):
        x = jnp.asarray(data.astype(dtype))
        params = jaxem_params(starts, dtype)
        shapes = jax.eval_shape(lambda key: model.init(key, x), key)
        auto = _auto_restart_batch_size(model, x, NUM_RESTARTS)
    param_elements = sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(shapes))

    def runner(batch_size: int) -> Runner:
        def run(iterations: int) -> jaxem.FitResult:
            result = jaxem.fit(
                model,
                x,
                key=key,
                init_params=params,
                num_restarts=NUM_RESTARTS,
                restart_batch_size=batch_size,
                max_iter=m,
                tol=STOP_AFTER_TWO_TOL if iterations == 2 else 0.0,
            )
            return jax.block_until_ready(result)

        return Runner(run, check_jaxem, functools.partial(x64, dtype))

    slopes = measure_slopes({str(b): runner(b) for b in batch_sizes}, (2, m), repeats)
    times = {b: slope.ms_per_iter for b, slope in slopes.items()}
    compile_s = {b: slope.compile_s for b, slope in slopes.items()}
    recompiles = {b: slope.recompiles for b, slope in slopes.items()}
    best = min(times, key=times.get)
    cell = {
        "covariance_type": covariance_type,
        "n": n,
        "D": dim,
        "K": num_components,
        "dtype": dtype,
        "param_elements": param_elements,
        "work": n * param_elements,
        "iterations": [2, m],
        "ms_per_iter": times,
        "compile_s": compile_s,
        "recompiles": recompiles,
        "best_restart_batch_size": int(best),
        "auto_restart_batch_size": auto,
        "auto_loss": times.get(str(auto), math.nan) / times[best],
    }
    if "1" in times and str(NUM_RESTARTS) in times:
        cell["speedup_vmap_vs_sequential"] = times["1"] / times[str(NUM_RESTARTS)]
    return cell


def run_calibration(
    quick: bool, repeats: int, batch_sizes: Sequence[int], dtype: str
) -> list[dict[str, Any]]:
    """:func:`calibrate_cell` over :func:`calibration_grid`."""
    cells = []
    grid = calibration_grid(quick)
    for index, (ctype, n, dim, k) in enumerate(grid):
        _log(
            f"[{index + 1}/{len(grid)}] {ctype} {n}×{dim}×{k}: "
            f"{calibration_iterations(n, dim, k, ctype)} iterations"
        )
        cells.append(
            calibrate_cell(ctype, n, dim, k, repeats=repeats, batch_sizes=batch_sizes, dtype=dtype)
        )
    return cells


def suggest_threshold(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``work = n · param_elements`` threshold (vmap all restarts at or
    below it, run them in turn above it) that minimises the summed time over
    the grid, each cell's time relative to its best batch size."""
    key_all, key_one = str(NUM_RESTARTS), "1"
    usable = [c for c in cells if key_all in c["ms_per_iter"] and key_one in c["ms_per_iter"]]
    if not usable:
        return {}
    works = sorted({c["work"] for c in usable})
    candidates = [0, *works]
    best_threshold, best_cost = None, math.inf
    costs = {}
    for threshold in candidates:
        cost = 0.0
        for cell in usable:
            times = cell["ms_per_iter"]
            chosen = times[key_all] if cell["work"] <= threshold else times[key_one]
            cost += chosen / min(times.values())
        costs[threshold] = cost / len(usable)
        if cost < best_cost - 1e-12:
            best_threshold, best_cost = threshold, cost
    current = 2**21
    current_cost = sum(
        (c["ms_per_iter"][key_all] if c["work"] <= current else c["ms_per_iter"][key_one])
        / min(c["ms_per_iter"].values())
        for c in usable
    ) / len(usable)
    above = [w for w in works if w > best_threshold]
    return {
        "rule": "vmap all restarts when n * param_elements <= threshold, else one at a time",
        "best_threshold": best_threshold,
        "next_work_above": above[0] if above else None,
        "mean_relative_time_at_best": best_cost / len(usable),
        "current_threshold": current,
        "mean_relative_time_at_current": current_cost,
        "mean_relative_time_by_threshold": {str(t): v for t, v in costs.items()},
    }


# ----------------------------------------------------------------- printing


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'config':<11} {'type':<5} {'dtype':<8} {'n×D×K':<15} {'jaxem ms/it':>11} "
        f"{'baseline':<16} {'ms/it':>9} {'ratio':>7} {'target':>7} {'result':<6} "
        f"{'compile s':>9}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        size = f"{row['n']}×{row['D']}×{row['K']}"
        if row.get("skipped"):
            lines.append(
                f"{row['config']:<11} {row['covariance_type']:<5} {row['dtype']:<8} "
                f"{size:<15} skipped: {row['skipped']}"
            )
            continue
        ours = row["jaxem"]
        baseline = row["baseline"] or {}
        name = {
            "scikit-learn": "scikit-learn",
            "jaxem restart_batch_size=1": "jaxem batch=1",
            None: "—",
        }.get(row["baseline_name"], row["baseline_name"])
        result = "—" if row["passed"] is None else ("PASS" if row["passed"] else "FAIL")
        target = "—" if row["target"] is None else f"≥{row['target']:g}×"
        ratio = "—" if row["ratio"] is None else f"{row['ratio']:.2f}×"
        lines.append(
            f"{row['config']:<11} {row['covariance_type']:<5} {row['dtype']:<8} {size:<15} "
            f"{_fmt(ours.get('ms_per_iter'), '.3f'):>11} {name:<16} "
            f"{_fmt(baseline.get('ms_per_iter'), '.3f'):>9} {ratio:>7} {target:>7} "
            f"{result:<6} {_fmt(ours.get('compile_s')):>9}"
        )
    return "\n".join(lines)


def format_restarts(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        if row["kind"] != "restarts":
            continue
        m2 = str(row["iterations"][1])
        batched = row["variants"][f"batch={NUM_RESTARTS}"]["ms_per_iter"]
        lines.append(
            f"\n{NUM_RESTARTS} restarts, {row['covariance_type']} "
            f"{row['n']}×{row['D']}×{row['K']}, {row['dtype']} "
            f"(restart_batch_size=None picks {row['auto_restart_batch_size']})"
        )
        header = (
            f"  {'variant':<12} {'ms/iter':>9} {'fixed ms':>9} {f'fit ms (M={m2})':>15} "
            f"{'compile s':>9} {'time / batch=8':>14}"
        )
        lines += [header, "  " + "-" * (len(header) - 2)]
        for label, variant in row["variants"].items():
            shown = {"separate": f"{NUM_RESTARTS} x fit()"}.get(label, label)
            lines.append(
                f"  {shown:<12} {_fmt(variant['ms_per_iter'], '.3f'):>9} "
                f"{_fmt(variant['fixed_ms']):>9} "
                f"{_fmt(1e3 * variant['best_call_s'][m2], '.1f'):>15} "
                f"{_fmt(variant['compile_s']):>9} "
                f"{_fmt(variant['ms_per_iter'] / batched):>14}"
            )
    return "\n".join(lines)


def format_calibration(cells: list[dict[str, Any]], batch_sizes: Sequence[int]) -> str:
    columns = " ".join(f"{f'b={b} ms/it':>12}" for b in batch_sizes)
    header = (
        f"{'type':<5} {'n×D×K':<15} {'n·params':>11} {columns} {'best':>5} "
        f"{'t1/t8':>6} {'auto':>5} {'auto/best':>9}"
    )
    lines = [header, "-" * len(header)]
    for cell in sorted(cells, key=lambda c: (c["work"], c["covariance_type"])):
        times = " ".join(f"{_fmt(cell['ms_per_iter'].get(str(b)), '.3f'):>12}" for b in batch_sizes)
        size = f"{cell['n']}×{cell['D']}×{cell['K']}"
        lines.append(
            f"{cell['covariance_type']:<5} {size:<15} {cell['work']:>11} {times} "
            f"{cell['best_restart_batch_size']:>5} "
            f"{_fmt(cell.get('speedup_vmap_vs_sequential')):>6} "
            f"{cell['auto_restart_batch_size']:>5} {_fmt(cell['auto_loss']):>9}"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------- main


def default_output(mode: str, quick: bool) -> Path:
    stem = "gmm" if mode == "compare" else "gmm-restarts"
    host = socket.gethostname().split(".")[0] or "host"
    date = datetime.date.today().isoformat()
    suffix = "-quick" if quick else ""
    return RESULTS_DIR / f"{stem}-{host}-{jax.default_backend()}-{date}{suffix}.json"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this config (repeatable or comma-separated): "
        + ", ".join(c.name for c in configs(quick=False)),
    )
    parser.add_argument(
        "--dtype", action="append", choices=DTYPES, help="run only this dtype (repeatable)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed calls per iteration count; the best is kept "
        "(default 5; 3 with --quick or --calibrate-restarts)",
    )
    parser.add_argument("--out", type=Path, help="JSON output path")
    parser.add_argument(
        "--blas-threads",
        type=int,
        default=None,
        help="BLAS threads for scikit-learn (default: the faster of the default and 1, by probe)",
    )
    parser.add_argument(
        "--calibrate-restarts",
        action="store_true",
        help="time restart_batch_size 1/2/4/8 over a grid of sizes instead",
    )
    parser.add_argument(
        "--batch-sizes",
        default="1,2,4,8",
        help="restart_batch_size values for --calibrate-restarts (default 1,2,4,8)",
    )
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    names = {c.name for c in configs(quick=False)}
    if args.only:
        args.only = [name for value in args.only for name in value.split(",") if name]
        unknown = sorted(set(args.only) - names)
        if unknown:
            parser.error(f"unknown config(s) {unknown}; choose from {sorted(names)}")
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    except ValueError:
        parser.error(f"--batch-sizes must be comma-separated integers; got {args.batch_sizes!r}")
    if any(b < 1 for b in args.batch_sizes):
        parser.error("--batch-sizes must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()
    mode = "calibrate-restarts" if args.calibrate_restarts else "compare"
    report: dict[str, Any] = {
        "benchmark": "gmm",
        "mode": mode,
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine,
        "backend": backend_info(),
        "versions": versions(),
        "reg_covar": REG_COVAR,
    }
    _log(
        f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}); "
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}); load {machine['load_average']}"
    )
    if args.calibrate_restarts:
        repeats = args.repeats or 3
        dtype = (args.dtype or ["float32"])[0]
        cells = run_calibration(args.quick, repeats, args.batch_sizes, dtype)
        summary = suggest_threshold(cells)
        report |= {"repeats": repeats, "restarts": NUM_RESTARTS, "cells": cells}
        report["suggestion"] = summary
        text = format_calibration(cells, args.batch_sizes)
        if summary:
            text += (
                f"\n\nbest threshold on n·params: {summary['best_threshold']} "
                f"(next size above: {summary['next_work_above']}); mean time relative to "
                f"the best batch size: {summary['mean_relative_time_at_best']:.3f} "
                f"vs {summary['mean_relative_time_at_current']:.3f} at the current "
                f"2**21 = {summary['current_threshold']}"
            )
    else:
        repeats = args.repeats or (3 if args.quick else 5)
        selected = [c for c in configs(args.quick) if not args.only or c.name in args.only]
        if args.dtype:
            selected = [
                dataclasses.replace(c, dtypes=tuple(d for d in c.dtypes if d in args.dtype))
                for c in selected
            ]
        rows = run_benchmark(selected, repeats, args.blas_threads)
        report |= {"repeats": repeats, "results": rows}
        text = format_table(rows) + "\n" + format_restarts(rows)
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(text)
    out = args.out or default_output(mode, args.quick)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(report), indent=1, allow_nan=False) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
