"""Benchmark jaxem's continuous latent variables: factor analysis against
scikit-learn, Gaussian-mixture EM with missing values, and Kalman smoothing
(sequential and parallel in time) against dynamax.

Three parts (``--only``):

* ``factor-analysis``: time to the same log-likelihood. scikit-learn's
  ``FactorAnalysis`` (its defaults, ``svd_method="randomized"`` and
  ``"lapack"``) runs to convergence on ``n × D`` data with ``q`` factors
  (default 10⁵ × 64 × 8, fixed seed); the higher of its final mean
  log-likelihoods is ``L*``. jaxem then has to reach ``L* − 1e-6 |L*|``:
  the estimator ``jaxem.estimators.FactorAnalysis`` with its default ``tol``,
  and the model ``jaxem.FactorAnalysis(q)`` under ``jaxem.fit`` with a
  stopping rule chosen from one long probe run so that it gets there, each
  in float64 and float32. Every fit's mean log-likelihood is evaluated by
  one float64 formula from the data's mean and scatter, so they are
  compared on one scale. Reported: wall seconds per fit (median over
  interleaved rounds; jaxem after compilation, compile time apart),
  iterations, final log-likelihoods, and scikit-learn ÷ jaxem.
* ``gmm-missing``: ``jaxem.GaussianMixture`` (full and diag), 10⁵ × 8 × 8,
  float64 and float32: ms per EM iteration on complete data against the
  same data with 20 % of the entries missing completely at random (NaN;
  every row keeps an observed value), from the same start, ``tol=0``, the
  slope between two ``max_iter`` (as ``gmm.py``), compile times, and the
  ratio missing ÷ complete. scikit-learn cannot fit NaN (its error is
  recorded, not timed).
* ``kalman``: ``jaxem.inference.kalman_smoother`` with ``parallel=False``
  and ``True`` on one sequence (T = 10⁵, S = 4 states, D = 4 emissions),
  jitted, float64 and float32: compile time and the median of repeated
  calls; dynamax's ``lgssm_smoother`` (and, with ``--dynamax-parallel``, its
  ``parallel_inference`` version) on the same model and data in a
  subprocess, whose float64 smoothed means are compared with jaxem's.

The ``gmm-missing`` cases and the ``kalman`` runs each go to a fresh process
of this file, watched for CPU progress: jaxlib 0.10.2's batched CPU LAPACK
kernels can deadlock XLA's thread pool (see "isolated worker processes"
below), and a deadlocked case is rerun on one CPU.

Run from the repository root::

    python bench/continuous.py --dynamax-python /tmp/dynvenv/bin/python   # ~15 min, 2 cores
    python bench/continuous.py --quick                                    # small sizes, a smoke run
    python bench/continuous.py --only kalman --repeats 5

Results go to ``bench/results/continuous-<host>-<backend>-<date>[-quick].json``
(or ``--out``); see ``bench/README.md`` for the fields.

This file also runs as those workers (``--worker TASK OUT``), dynamax's in a
Python that may have dynamax but not jaxem or scikit-learn: only numpy and
jax are imported at the top.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
sys.path.insert(0, str(BENCH_DIR))
DTYPES = ("float64", "float32")
PARTS = ("factor-analysis", "gmm-missing", "kalman")
# jaxem must reach scikit-learn's maximum up to this relative gap.
RELATIVE_GAP = 1e-6
MISSING_FRACTION = 0.2


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _median_summary(samples: Sequence[float], scale: float = 1.0) -> dict[str, Any]:
    values = scale * np.asarray(samples, float)
    return {
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


# ================================================== part 1: factor analysis


def factor_data(n: int, dim: int, num_factors: int, seed: int = 0) -> np.ndarray:
    """``(n, D)`` float64 draws of ``μ + W z + ε``: ``W ~ N(0, 1)`` ``(D,
    q)``, ``z ~ N(0, I_q)``, ``ε ~ N(0, diag(ψ))`` with ``ψ ~ U(0.2, 2)``,
    ``μ ~ N(0, 1)``."""
    rng = np.random.default_rng(seed)
    loadings = rng.normal(size=(dim, num_factors))
    noise = rng.uniform(0.2, 2.0, size=dim)
    mean = rng.normal(size=dim)
    factors = rng.standard_normal((n, num_factors))
    return mean + factors @ loadings.T + np.sqrt(noise) * rng.standard_normal((n, dim))


class MeanLogLikelihood:
    """``(1/n) Σ_i log N(x_i | μ, C)`` in float64 from the data's mean and
    scatter: ``−(D log 2π + log|C| + tr(C⁻¹ (S + (x̄ − μ)(x̄ − μ)ᵀ))) / 2``,
    one formula for every library's fitted ``(μ, C)``."""

    def __init__(self, x: np.ndarray) -> None:
        self.mean = x.mean(axis=0)
        centred = x - self.mean
        self.scatter = centred.T @ centred / x.shape[0]

    def __call__(self, mean: np.ndarray, covariance: np.ndarray) -> float:
        mean = np.asarray(mean, np.float64)
        covariance = np.asarray(covariance, np.float64)
        factor = np.linalg.cholesky(covariance)
        shift = self.mean - mean
        inverse = np.linalg.inv(factor)
        quadratic = np.sum((inverse @ (self.scatter + np.outer(shift, shift))) * inverse)
        log_det = 2.0 * np.sum(np.log(np.diagonal(factor)))
        return -0.5 * (mean.shape[0] * math.log(2.0 * math.pi) + log_det + quadratic)


def _factor_covariance(loadings: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """``W Wᵀ + diag(ψ)`` in float64, for loadings ``(D, q)``."""
    loadings = np.asarray(loadings, np.float64)
    return loadings @ loadings.T + np.diag(np.asarray(noise, np.float64))


def _sklearn_fa_runner(x: np.ndarray, num_factors: int, svd_method: str):
    """``run(max_iter=None)``: scikit-learn's ``FactorAnalysis`` with its
    defaults (``max_iter`` only for the BLAS-thread probe)."""
    from sklearn.decomposition import FactorAnalysis as SklearnFactorAnalysis
    from sklearn.exceptions import ConvergenceWarning

    def run(max_iter: int | None = None):
        options = {} if max_iter is None else {"max_iter": max_iter}
        model = SklearnFactorAnalysis(num_factors, svd_method=svd_method, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return model.fit(x)

    return run


def _fit_history(result: Any) -> np.ndarray:
    num_iter = int(np.asarray(result.num_iter)[0])
    return np.asarray(result.history[0][:num_iter], np.float64)


def choose_stopping_rule(
    run: Callable[[float, int], Any],
    evaluate: Callable[[Any], float],
    target: float,
    cap: int,
    monitor: Callable[[], Any],
) -> tuple[dict[str, Any], Any]:
    """A ``(tol, max_iter)`` with which ``run`` reaches ``target``, and that
    run's result.

    One probe run with ``tol=0`` and ``max_iter=cap`` (the first call, which
    compiles the program every ``tol`` shares) records the objective after
    every iteration. From it: the first iteration at which the model's own
    objective reaches ``target``, and the largest ``tol`` (a power of ten)
    whose rule (``|change| < tol``) would stop no earlier; that rule is then
    run and its final parameters evaluated in float64 (a ten times smaller
    ``tol`` if it falls short, up to three times). Where no positive ``tol``
    can get there (in float32 the change can round to exactly 0 before the
    target), ``tol=0`` with ``max_iter`` just past that iteration (a second
    compiled program). ``monitor()`` makes a ``gmm.CompileMonitor``: each
    trial records the seconds JAX spent tracing, lowering and compiling.
    """
    trials, results = [], []

    def attempt(tol: float, max_iter: int) -> tuple[Any, dict[str, Any]]:
        with monitor() as compiling:
            begin = time.perf_counter()
            result = run(tol, max_iter)
            seconds = time.perf_counter() - begin
        trial = {
            "tol": tol,
            "max_iter": max_iter,
            "seconds": seconds,
            "compile_s": compiling.compile_seconds + compiling.trace_seconds,
            "compilations": compiling.compilations,
            "num_iter": int(np.asarray(result.num_iter)[0]),
            "mean_log_likelihood": evaluate(result),
        }
        trial["reached"] = bool(trial["mean_log_likelihood"] >= target)
        trials.append(trial)
        results.append(result)
        return result, trial

    probe, _ = attempt(0.0, cap)
    history = _fit_history(probe)
    reached = np.flatnonzero(history >= target)
    needed = int(reached[0]) if reached.size else None
    changes = np.abs(np.diff(history))
    choice: dict[str, Any] | None = None
    if needed is not None:
        # iteration i (1-based) stops when |history[i-1] - history[i-2]| < tol
        for exponent in range(-3, -13, -1):
            tol = 10.0**exponent
            below = np.flatnonzero(changes < tol)
            stop = int(below[0]) + 2 if below.size else None
            if stop is not None and stop - 1 < needed:
                continue
            for _ in range(4):
                _, trial = attempt(tol, cap)
                if trial["reached"]:
                    choice = trial
                    break
                tol /= 10.0
            break
        if choice is None:
            for max_iter in (needed + 1, math.ceil(1.25 * (needed + 1))):
                _, trial = attempt(0.0, min(max_iter, cap))
                if trial["reached"]:
                    choice = trial
                    break
    if choice is None:
        choice = trials[0]
    rule = {
        "tol": choice["tol"],
        "max_iter": choice["max_iter"],
        "reached": choice["reached"],
        "probe_history_reaches_target_after": None if needed is None else needed,
        "trials": trials,
    }
    return rule, next(r for r, t in zip(results, trials, strict=True) if t is choice)


def run_factor_analysis(args: argparse.Namespace) -> dict[str, Any]:
    """scikit-learn to convergence, then jaxem (estimator and model, each
    dtype) to the same log-likelihood, in interleaved rounds."""
    from gmm import CompileMonitor, choose_blas_threads, limit_blas_threads, x64

    import jaxem
    import jaxem.estimators

    n, dim, num_factors = args.fa_size
    repeats = args.fa_repeats
    _log(f"factor-analysis: {n} × {dim}, {num_factors} factors")
    x = factor_data(n, dim, num_factors, seed=0)
    score = MeanLogLikelihood(x)
    variants: dict[str, dict[str, Any]] = {}
    calls: dict[str, Callable[[], Any]] = {}
    contexts: dict[str, Callable[[], contextlib.AbstractContextManager]] = {}
    outcome: dict[str, Callable[[Any], dict[str, Any]]] = {}

    # ------------------------------------------------------- scikit-learn
    def sklearn_outcome(model: Any) -> dict[str, Any]:
        ll = score(model.mean_, _factor_covariance(model.components_.T, model.noise_variance_))
        return {
            "n_iter": int(model.n_iter_),
            "mean_log_likelihood": ll,
            "own_final_mean_log_likelihood": float(model.loglike_[-1]) / n,
        }

    for svd_method in ("randomized", "lapack"):
        name = f"scikit-learn {svd_method}"
        run = _sklearn_fa_runner(x, num_factors, svd_method)
        _log(f"  {name}: probing BLAS threads")
        threads, probe = choose_blas_threads(run, 3, args.blas_threads)
        context = functools.partial(limit_blas_threads, threads)
        _log(f"  {name}: first fit ({threads} BLAS threads)")
        with context():
            begin = time.perf_counter()
            fitted = run()
            first = time.perf_counter() - begin
        variants[name] = {
            "library": "scikit-learn",
            "svd_method": svd_method,
            "dtype": "float64",
            "working_dtype": str(fitted.components_.dtype),
            "settings": {"tol": fitted.tol, "max_iter": fitted.max_iter},
            "blas_threads": threads,
            "blas_thread_probe_s": probe,
            "first_call_s": first,
        } | sklearn_outcome(fitted)
        calls[name], contexts[name], outcome[name] = run, context, sklearn_outcome
    best = max(
        (v for v in variants.values() if v["library"] == "scikit-learn"),
        key=lambda v: v["mean_log_likelihood"],
    )
    reference = best["mean_log_likelihood"]
    target = reference - RELATIVE_GAP * abs(reference)
    _log(f"  L* = {reference:.10f} ({best['svd_method']}); target {target:.10f}")

    # ------------------------------------------------------ jaxem estimator
    def estimator_outcome(model: Any) -> dict[str, Any]:
        ll = score(model.mean_, _factor_covariance(model.components_.T, model.noise_variance_))
        return {
            "n_iter": int(model.n_iter_),
            "mean_log_likelihood": ll,
            "own_final_mean_log_likelihood": float(model.loglike_[-1]) / n,
        }

    for dtype in args.dtype:
        name = f"jaxem estimator {dtype}"
        data = x.astype(dtype)

        def run_estimator(data=data) -> Any:
            return jaxem.estimators.FactorAnalysis(num_factors).fit(data)

        _log(f"  {name}: first fit (compiles)")
        monitor = CompileMonitor()
        with monitor:
            begin = time.perf_counter()
            fitted = run_estimator()
            first = time.perf_counter() - begin
        variants[name] = {
            "library": "jaxem",
            "api": "jaxem.estimators.FactorAnalysis",
            "dtype": dtype,
            "settings": {
                "tol": fitted.tol,
                "max_iter": fitted.max_iter,
                "num_inner_steps": jaxem.estimators._factor_analysis.INNER_STEPS,
            },
            "first_call_s": first,
            "xla_compile_s": monitor.compile_seconds,
            "trace_s": monitor.trace_seconds,
            "compilations": monitor.compilations,
        } | estimator_outcome(fitted)
        calls[name], contexts[name] = run_estimator, contextlib.nullcontext
        outcome[name] = estimator_outcome

    # ------------------------------------------------------- jaxem model
    model = jaxem.FactorAnalysis(num_factors)

    def model_outcome(result: Any) -> dict[str, Any]:
        params = jax.device_get(result.params)
        history = _fit_history(result)
        return {
            "n_iter": int(np.asarray(result.num_iter)[0]),
            "mean_log_likelihood": score(
                params.mean, _factor_covariance(params.loadings, params.noise)
            ),
            "own_final_mean_log_likelihood": float(history[-1]) if history.size else None,
        }

    for dtype in args.dtype:
        name = f"jaxem model {dtype}"
        with x64(dtype):
            data = jnp.asarray(x.astype(dtype))

        def run_model(tol: float, max_iter: int, data=data, dtype=dtype) -> Any:
            with x64(dtype):
                result = jaxem.fit(model, data, key=jax.random.key(0), tol=tol, max_iter=max_iter)
                return jax.block_until_ready(result)

        _log(f"  {name}: choosing the stopping rule (probe of {args.fa_cap} iterations)")
        rule, result = choose_stopping_rule(
            run_model,
            lambda r: model_outcome(r)["mean_log_likelihood"],
            target,
            args.fa_cap,
            CompileMonitor,
        )
        # The timed program compiled in the first trial with its max_iter.
        compiling = next(t for t in rule["trials"] if t["max_iter"] == rule["max_iter"])
        _log(
            f"  {name}: tol={rule['tol']:g}, max_iter={rule['max_iter']}, reached={rule['reached']}"
        )
        rule_call = functools.partial(run_model, rule["tol"], rule["max_iter"])
        variants[name] = {
            "library": "jaxem",
            "api": "jaxem.fit(jaxem.FactorAnalysis(q))",
            "dtype": dtype,
            "settings": {
                "tol": rule["tol"],
                "max_iter": rule["max_iter"],
                "num_inner_steps": model.num_inner_steps,
            },
            "stopping_rule": rule,
            "compile_s": compiling["compile_s"],
            "compilations": compiling["compilations"],
            "compile_note": "XLA's tracing, lowering and compiling seconds (jax.monitoring) "
            "in the first call of this program (a stopping-rule trial)",
        } | model_outcome(result)
        calls[name], contexts[name], outcome[name] = (
            rule_call,
            contextlib.nullcontext,
            model_outcome,
        )

    # ------------------------------------------------------------- rounds
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    steady = {name: CompileMonitor() for name in names}
    _log(f"  timing {', '.join(names)}: {repeats} rounds")
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            with contexts[name](), steady[name]:
                begin = time.perf_counter()
                fitted = calls[name]()
                samples[name].append(time.perf_counter() - begin)
            after = outcome[name](fitted)
            if after["n_iter"] != variants[name]["n_iter"]:
                raise RuntimeError(f"{name}: {after['n_iter']} iterations, before {variants[name]}")
    for name, row in variants.items():
        row |= {"calls_s": samples[name]} | {
            f"{k}_s" if k != "median" else "s": v for k, v in _median_summary(samples[name]).items()
        }
        row["recompiles"] = steady[name].compilations
        if row.get("api") == "jaxem.estimators.FactorAnalysis":
            row["compile_s"] = row["first_call_s"] - row["s"]
        row["relative_gap_to_reference"] = (reference - row["mean_log_likelihood"]) / abs(reference)
        row["reached_target"] = bool(row["mean_log_likelihood"] >= target)
    comparisons = []
    for ours_name, ours in variants.items():
        if ours["library"] != "jaxem":
            continue
        for theirs_name, theirs in variants.items():
            if theirs["library"] != "scikit-learn":
                continue
            comparisons.append(
                {
                    "jaxem": ours_name,
                    "baseline": theirs_name,
                    "jaxem_s": ours["s"],
                    "baseline_s": theirs["s"],
                    "ratio": theirs["s"] / ours["s"] if ours["reached_target"] else None,
                    "jaxem_reached_target": ours["reached_target"],
                }
            )
    return {
        "n": n,
        "D": dim,
        "q": num_factors,
        "relative_gap": RELATIVE_GAP,
        "reference_mean_log_likelihood": reference,
        "reference_from": f"scikit-learn {best['svd_method']}",
        "target_mean_log_likelihood": target,
        "repeats": repeats,
        "probe_max_iter": args.fa_cap,
        "variants": variants,
        "comparisons": comparisons,
    }


# ================================================== isolated worker processes
#
# jaxlib 0.10.2's CPU LAPACK kernels (Cholesky, LU, triangular solves) split a
# batch over XLA's intra-op thread pool and block until the pieces are done
# (``jax::ParallelBatchMap``). When as many such kernels run at once as the
# pool has threads (2 on a 2-core machine), every thread waits for pieces that
# no thread is free to run: the process deadlocks, at 0 % CPU. Measurements
# that may meet it run in a fresh process of this file (``--worker``), watched
# for CPU progress; a stalled one is killed (its native stack summarised with
# gdb when available) and run again on one CPU, where the pool has one thread
# and the kernels run their batches inline.


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


NATIVE_FRAMES = (
    "jax::ParallelBatchMap",
    "BlockingCounter::Wait",
    "xla::cpu::CustomCallThunk::Execute",
)


def _native_stack_summary(pid: int) -> dict[str, Any]:
    """Frames of interest in every thread's native stack (gdb), counted."""
    try:
        text = subprocess.run(
            ["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 40"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return {"unavailable": f"{type(error).__name__}: {error}"}
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            continue
        for frame in NATIVE_FRAMES:
            if frame in line:
                counts[frame] = counts.get(frame, 0) + 1
        for word in line.split():
            if word.startswith("lapack_") and word.endswith("_ffi"):
                counts[word] = counts.get(word, 0) + 1
    return {"frames": counts, "threads": text.count("\nThread ")}


def run_worker(
    task: dict[str, Any],
    workdir: Path,
    *,
    python: str | None = None,
    cpus: int | None = None,
    stall_s: float = 15.0,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """``task`` in a fresh process (``--worker``), its JSON report back.

    The worker is killed when it uses no CPU for ``stall_s`` seconds (a
    deadlock) or runs past ``timeout_s``; then the report is ``{"outcome":
    "stalled" | "timeout" | "failed", "stage": the worker's last progress
    line, ...}``. ``cpus`` limits the worker's CPU affinity (set by the worker
    before JAX starts; XLA sizes its thread pool from it).
    """
    name = f"{task['kind']}-{task.get('label', '')}-{cpus or 'all'}".replace(" ", "_")
    task_path, out_path = workdir / f"{name}.task.json", workdir / f"{name}.out.json"
    progress, log = workdir / f"{name}.progress", workdir / f"{name}.log"
    for path in (out_path, progress):
        path.unlink(missing_ok=True)
    command = [python or sys.executable, str(Path(__file__).resolve()), "--worker"]
    command += [str(task_path), str(out_path)]
    env = os.environ | {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    if cpus is not None:
        task = task | {"cpus": sorted(os.sched_getaffinity(0))[:cpus]}
    task_path.write_text(json.dumps(task | {"progress": str(progress)}))
    begin = time.monotonic()
    with open(log, "w") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        last_cpu, last_change, outcome, native = 0.0, begin, None, None
        while proc.poll() is None:
            time.sleep(1.0)
            now = time.monotonic()
            used = _process_cpu_seconds(proc.pid)
            if used is not None and used - last_cpu > 0.05:
                last_cpu, last_change = used, now
            elif now - last_change > stall_s:
                outcome = "stalled"
            elif now - begin > timeout_s:
                outcome = "timeout"
            if outcome:
                if outcome == "stalled":
                    native = _native_stack_summary(proc.pid)
                proc.kill()
                proc.wait()
                break
    wall = time.monotonic() - begin
    stage = progress.read_text().strip().splitlines()[-1:] if progress.exists() else []
    common = {"cpus": cpus, "wall_s": wall, "stage": stage[0] if stage else None}
    if outcome is None and proc.returncode == 0 and out_path.exists():
        return json.loads(out_path.read_text()) | common | {"outcome": "ok"}
    tail = log.read_text().strip().splitlines()[-12:] if log.exists() else []
    report = common | {"outcome": outcome or "failed", "returncode": proc.returncode}
    if outcome == "stalled":
        report["stalled_after_s"] = stall_s
        report["native_stack"] = native
    else:
        report["log_tail"] = tail
    return report


def run_with_fallback(task: dict[str, Any], workdir: Path, **options: Any) -> dict[str, Any]:
    """:func:`run_worker` on every CPU; if that stalls, again on one CPU.
    The report holds ``attempts`` (every failed try) and ``cpus`` (of the
    measurement kept, ``None`` for all)."""
    attempts = []
    for cpus in (None, 1):
        report = run_worker(task, workdir, cpus=cpus, **options)
        if report["outcome"] == "ok":
            return report | {"attempts": attempts}
        where = f"{task['kind']} {task.get('label', '')}"
        _log(f"    {where}: {report['outcome']} at '{report['stage']}'")
        attempts.append(report)
        if report["outcome"] != "stalled":
            break
    return {"outcome": attempts[-1]["outcome"], "attempts": attempts}


class _Progress:
    """The worker's progress line (read by the parent when it stalls)."""

    def __init__(self, path: str | None) -> None:
        self.path = path

    def __call__(self, text: str) -> None:
        if self.path:
            with open(self.path, "a") as file:
                file.write(text + "\n")


def worker_main(task_path: str, out_path: str) -> int:
    """Run one task written by :func:`run_worker` (``--worker``)."""
    task = json.loads(Path(task_path).read_text())
    if task.get("cpus"):
        # Before JAX starts its CPU client: threads created later inherit it,
        # and XLA sizes its intra-op thread pool from it.
        os.sched_setaffinity(0, task["cpus"])
    stage = _Progress(task.get("progress"))
    handlers = {
        "gmm-missing": gmm_missing_case,
        "kalman": kalman_case,
        "dynamax-kalman": dynamax_kalman_case,
    }
    report = handlers[task["kind"]](task, stage)
    report["worker_cpus"] = len(os.sched_getaffinity(0))
    Path(out_path).write_text(json.dumps(report))
    return 0


# ==================================================== part 2: gmm-missing


def missing_completely_at_random(x: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """``x`` with each entry NaN with probability ``fraction``, independently;
    a row left with nothing observed gets one random entry back."""
    rng = np.random.default_rng(seed)
    mask = rng.random(x.shape) < fraction
    empty = np.flatnonzero(mask.all(axis=1))
    mask[empty, rng.integers(0, x.shape[1], size=empty.size)] = False
    return np.where(mask, np.nan, x)


def sklearn_refuses_nan() -> str:
    """scikit-learn's error for a ``GaussianMixture`` fit on data with NaN
    (on a tiny array: it is not timed)."""
    from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

    x = np.random.default_rng(0).normal(size=(20, 2))
    x[3, 1] = np.nan
    try:
        SklearnGaussianMixture(2, random_state=0).fit(x)
    except ValueError as error:
        return f"ValueError: {' '.join(str(error).split())}"
    return "scikit-learn fitted data with NaN (unexpected)"


def gmm_missing_case(task: dict[str, Any], stage: Callable[[str], None]) -> dict[str, Any]:
    """(worker) ms per EM iteration, complete and missing data, one
    covariance type and dtype."""
    from gmm import (
        REG_COVAR,
        Runner,
        check_jaxem,
        jaxem_params,
        jaxem_runner,
        make_data,
        measure_slopes,
        start_values,
        x64,
    )
    from hmm import per_round_summary

    import jaxem

    n, dim, num_components = task["n"], task["D"], task["K"]
    covariance_type, dtype = task["covariance_type"], task["dtype"]
    m1, m2 = task["iterations"]
    data = make_data(n, dim, num_components, covariance_type)
    start = start_values(data, num_components, covariance_type, seed=1)
    incomplete = missing_completely_at_random(data, MISSING_FRACTION, seed=2)
    missing = np.isnan(incomplete)
    model = jaxem.GaussianMixture(
        num_components, covariance_type=covariance_type, reg_covar=REG_COVAR
    )
    context = functools.partial(x64, dtype)
    runners, resolved = {}, {}
    with x64(dtype):
        params = jaxem_params([start], dtype)
        for name, values in (("complete", data), ("missing", incomplete)):
            x = jnp.asarray(values.astype(dtype))
            run = jaxem_runner(model, x, params)

            def staged(m: int, name=name, run=run) -> Any:
                stage(f"{name}: fit with max_iter={m}")
                return run(m)

            runners[name] = Runner(staged, check_jaxem, context)
            resolved[name] = model.for_data(x).missing
    slopes = measure_slopes(runners, (m1, m2), task["repeats"])
    variants = {}
    for name, slope in slopes.items():
        variants[name] = per_round_summary(slope, m1, m2) | {
            "compile_s": slope.compile_s,
            "xla_compile_s": slope.xla_compile_s,
            "trace_s": slope.trace_s,
            "compilations": slope.compilations,
            "recompiles": slope.recompiles,
            "model_missing": resolved[name],
        }
    return {
        "missing_fraction": float(missing.mean()),
        "rows_with_missing": float(missing.any(axis=1).mean()),
        "variants": variants,
    }


def run_gmm_missing(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Every covariance type and dtype, each in its own worker process."""
    n, dim, num_components = args.gmm_size
    rows = []
    for covariance_type in ("full", "diag"):
        for dtype in args.dtype:
            label = f"{covariance_type} {dtype}"
            iterations = list(getattr(args, f"gmm_iterations_{covariance_type}"))
            _log(f"gmm-missing: {covariance_type} {n}×{dim}×{num_components} {dtype}")
            task = {
                "kind": "gmm-missing",
                "label": label,
                "covariance_type": covariance_type,
                "dtype": dtype,
                "n": n,
                "D": dim,
                "K": num_components,
                "iterations": iterations,
                "repeats": args.gmm_repeats,
            }
            report = run_with_fallback(task, workdir, stall_s=args.stall_s)
            row = {
                "covariance_type": covariance_type,
                "dtype": dtype,
                "n": n,
                "D": dim,
                "K": num_components,
                "iterations": iterations,
                "repeats": args.gmm_repeats,
            } | {k: v for k, v in report.items() if k not in ("outcome",)}
            row["measured"] = report["outcome"] == "ok"
            if row["measured"]:
                complete, incomplete = row["variants"]["complete"], row["variants"]["missing"]
                row["missing_over_complete"] = incomplete["ms_per_iter"] / complete["ms_per_iter"]
                row["missing_over_complete_best_of"] = (
                    incomplete["ms_per_iter_best_of"] / complete["ms_per_iter_best_of"]
                )
            rows.append(row)
    return {
        "missing_fraction": MISSING_FRACTION,
        "rows": rows,
        "scikit_learn": "not timed: sklearn.mixture.GaussianMixture refuses NaN ("
        + sklearn_refuses_nan()
        + ")",
    }


# ========================================================= part 3: kalman


def kalman_model(state_dim: int, emission_dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A stable linear-Gaussian state-space model (float64): dynamics
    ``0.95 ×`` a random rotation, ``Q = 0.1 I``, ``H ~ N(0, 1)``, ``R = 0.5
    I``, ``z_0 ~ N(0, I)``."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.normal(size=(state_dim, state_dim)))
    return {
        "initial_mean": np.zeros(state_dim),
        "initial_covariance": np.eye(state_dim),
        "dynamics_weights": 0.95 * rotation,
        "dynamics_covariance": 0.1 * np.eye(state_dim),
        "emission_weights": rng.normal(size=(emission_dim, state_dim)),
        "emission_covariance": 0.5 * np.eye(emission_dim),
    }


def sample_kalman(model: dict[str, np.ndarray], steps: int, seed: int) -> np.ndarray:
    """``(T, D)`` float64 emissions drawn from ``model``."""
    rng = np.random.default_rng(seed)
    a, h = model["dynamics_weights"], model["emission_weights"]
    state_dim, emission_dim = a.shape[0], h.shape[0]
    q = np.linalg.cholesky(model["dynamics_covariance"])
    r = np.linalg.cholesky(model["emission_covariance"])
    state_noise = rng.standard_normal((steps, state_dim)) @ q.T
    states = np.empty((steps, state_dim))
    states[0] = model["initial_mean"] + np.linalg.cholesky(model["initial_covariance"]) @ (
        rng.standard_normal(state_dim)
    )
    for t in range(1, steps):
        states[t] = a @ states[t - 1] + state_noise[t]
    return states @ h.T + rng.standard_normal((steps, emission_dim)) @ r.T


KALMAN_ARRAYS = (
    "initial_mean",
    "initial_covariance",
    "dynamics_weights",
    "dynamics_covariance",
    "emission_weights",
    "emission_covariance",
)


def _time_compiled(
    compiled: dict[str, Any],
    arguments: tuple[Any, ...],
    repeats: int,
    stage: Callable[[str], None],
) -> tuple[dict[str, Any], dict[str, float], dict[str, list[float]]]:
    """One first call of each compiled variant, then ``repeats`` rounds with
    the order of the variants rotated: ``(outputs, first_s, calls_s)``."""
    names = list(compiled)
    outputs, first, calls = {}, {}, {name: [] for name in names}
    for name in names:
        stage(f"{name}: first call")
        begin = time.perf_counter()
        outputs[name] = jax.block_until_ready(compiled[name](*arguments))
        first[name] = time.perf_counter() - begin
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            stage(f"{name}: round {round_index + 1}")
            begin = time.perf_counter()
            jax.block_until_ready(compiled[name](*arguments))
            calls[name].append(time.perf_counter() - begin)
    return outputs, first, calls


def _compile(function: Callable[..., Any], arguments: tuple[Any, ...]) -> tuple[Any, float, dict]:
    """``jax.jit(function)`` compiled ahead of time: the executable, the
    seconds (tracing, lowering, compiling) and XLA's memory figures."""
    begin = time.perf_counter()
    compiled = jax.jit(function).lower(*arguments).compile()
    seconds = time.perf_counter() - begin
    memory: dict[str, Any] = {}
    with contextlib.suppress(Exception):
        stats = compiled.memory_analysis()
        memory = {
            "temp_bytes": int(stats.temp_size_in_bytes),
            "argument_bytes": int(stats.argument_size_in_bytes),
            "output_bytes": int(stats.output_size_in_bytes),
        }
    return compiled, seconds, memory


def _variant_rows(
    seconds: dict[str, float],
    memory: dict[str, dict],
    first: dict[str, float],
    calls: dict[str, list[float]],
) -> dict[str, dict[str, Any]]:
    rows = {}
    for name in calls:
        summary = _median_summary(calls[name], 1e3)
        rows[name] = {
            "ms": summary["median"],
            "ms_min": summary["min"],
            "ms_max": summary["max"],
            "calls_s": calls[name],
            "first_call_s": first[name],
            "compile_s": seconds[name],
            "memory": memory[name],
        }
    return rows


def kalman_case(task: dict[str, Any], stage: Callable[[str], None]) -> dict[str, Any]:
    """(worker) jaxem's ``kalman_smoother``, sequential and parallel, one
    dtype: compile seconds and milliseconds per call."""
    from gmm import CompileMonitor

    from jaxem.inference import kalman_smoother

    data = np.load(task["data"])
    dtype = task["dtype"]
    with jax.enable_x64(dtype == "float64"):
        arguments = tuple(
            jnp.asarray(data[name].astype(dtype)) for name in (*KALMAN_ARRAYS, "emissions")
        )
        compiled, seconds, memory = {}, {}, {}
        for name in task["variants"]:
            stage(f"{name}: compiling")
            function = functools.partial(kalman_smoother, parallel=name == "parallel")
            compiled[name], seconds[name], memory[name] = _compile(function, arguments)
        with CompileMonitor() as recompiling:
            outputs, first, calls = _time_compiled(compiled, arguments, task["repeats"], stage)
    variants = _variant_rows(seconds, memory, first, calls)
    means = {}
    for name, posterior in outputs.items():
        variants[name]["log_likelihood"] = float(posterior.log_likelihood)
        variants[name]["recompiles"] = recompiling.compilations
        means[name] = np.asarray(posterior.smoothed_means, np.float64)
    np.savez(task["means_out"], **means)
    return {"variants": variants}


def dynamax_kalman_case(task: dict[str, Any], stage: Callable[[str], None]) -> dict[str, Any]:
    """(worker, in dynamax's Python) dynamax's ``lgssm_smoother``, sequential
    (``linear_gaussian_ssm.inference``) and, if asked, parallel
    (``parallel_inference``), one dtype."""
    from hmm import _CompileCounter, _versions_of

    report: dict[str, Any] = {
        "versions": _versions_of(("jax", "jaxlib", "numpy", "dynamax")),
        "executable": sys.executable,
    }
    try:
        from dynamax.linear_gaussian_ssm import inference, parallel_inference
        from dynamax.linear_gaussian_ssm.inference import make_lgssm_params
    except Exception as error:  # (any import failure: report it, do not crash)
        return report | {"skipped": f"import dynamax failed: {type(error).__name__}: {error}"}
    functions = {
        "sequential": inference.lgssm_smoother,
        "parallel": parallel_inference.lgssm_smoother,
    }
    data = np.load(task["data"])
    dtype = task["dtype"]
    with jax.enable_x64(dtype == "float64"):
        params = make_lgssm_params(
            *(jnp.asarray(data[name].astype(dtype)) for name in KALMAN_ARRAYS)
        )
        arguments = (params, jnp.asarray(data["emissions"].astype(dtype)))
        compiled, seconds, memory = {}, {}, {}
        for name in task["variants"]:
            stage(f"dynamax {name}: compiling")
            compiled[name], seconds[name], memory[name] = _compile(functions[name], arguments)
        with _CompileCounter() as recompiling:
            outputs, first, calls = _time_compiled(compiled, arguments, task["repeats"], stage)
    variants = _variant_rows(seconds, memory, first, calls)
    means = {}
    for name, posterior in outputs.items():
        variants[name]["log_likelihood"] = float(posterior.marginal_loglik)
        variants[name]["recompiles"] = recompiling.compilations
        variants[name]["working_dtype"] = str(posterior.smoothed_means.dtype)
        means[name] = np.asarray(posterior.smoothed_means, np.float64)
    np.savez(task["means_out"], **means)
    return report | {"variants": variants}


def run_kalman(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """jaxem sequential and parallel, then dynamax, per dtype, each in a
    worker; the float64 smoothed means compared."""
    from hmm import dynamax_python

    steps, state_dim, emission_dim = args.kalman_size
    model = kalman_model(state_dim, emission_dim, seed=0)
    emissions = sample_kalman(model, steps, seed=1)
    data_path = workdir / "kalman.npz"
    np.savez(data_path, emissions=emissions, **model)
    if args.no_dynamax:
        python, why_not = None, "--no-dynamax"
    else:
        python, why_not = dynamax_python(args.dynamax_python)
    dynamax_variants = ["sequential"] + (["parallel"] if args.dynamax_parallel else [])
    libraries: dict[str, Any] = {}
    means: dict[str, np.ndarray] = {}
    for dtype in args.dtype:
        base = {"data": str(data_path), "dtype": dtype, "repeats": args.kalman_repeats}
        _log(f"kalman: jaxem {dtype}, T={steps}, S={state_dim}, D={emission_dim}")
        out = workdir / f"jaxem-{dtype}-means.npz"
        task = base | {
            "kind": "kalman",
            "label": dtype,
            "variants": ["sequential", "parallel"],
            "means_out": str(out),
        }
        libraries[f"jaxem {dtype}"] = run_with_fallback(task, workdir, stall_s=args.stall_s)
        if libraries[f"jaxem {dtype}"]["outcome"] == "ok":
            means |= {f"jaxem {name} {dtype}": v for name, v in np.load(out).items()}
        if python is None:
            libraries[f"dynamax {dtype}"] = {"outcome": "skipped", "skipped": why_not}
            continue
        _log(f"kalman: dynamax {dtype} ({', '.join(dynamax_variants)}) under {python}")
        out = workdir / f"dynamax-{dtype}-means.npz"
        task = base | {
            "kind": "dynamax-kalman",
            "label": dtype,
            "variants": dynamax_variants,
            "means_out": str(out),
        }
        report = run_with_fallback(task, workdir, python=python, stall_s=args.stall_s)
        libraries[f"dynamax {dtype}"] = report | {"python": python}
        if report["outcome"] == "ok" and "variants" in report:
            means |= {f"dynamax {name} {dtype}": v for name, v in np.load(out).items()}

    def difference(a: str, b: str) -> float | None:
        if a not in means or b not in means:
            return None
        return float(np.max(np.abs(means[a] - means[b])))

    checks = {}
    for dtype in args.dtype:
        reference = f"jaxem sequential {dtype}"
        for other in (f"jaxem parallel {dtype}", f"dynamax sequential {dtype}"):
            checks[f"{other} vs {reference}"] = difference(other, reference)
        checks[f"dynamax parallel {dtype} vs {reference}"] = difference(
            f"dynamax parallel {dtype}", reference
        )
    if "float64" in args.dtype and "float32" in args.dtype:
        checks["jaxem sequential float32 vs float64"] = difference(
            "jaxem sequential float32", "jaxem sequential float64"
        )
    timed = {}
    for key, report in libraries.items():
        library, dtype = key.split()
        for name, row in report.get("variants", {}).items():
            timed[(library, name, dtype)] = row | {"cpus": report.get("cpus")}
    pairs = [
        (("jaxem", "parallel"), ("jaxem", "sequential")),
        (("jaxem", "sequential"), ("dynamax", "sequential")),
        (("jaxem", "parallel"), ("dynamax", "sequential")),
        (("jaxem", "parallel"), ("dynamax", "parallel")),
    ]
    comparisons = []
    for dtype in args.dtype:
        for (our_library, our_name), (their_library, their_name) in pairs:
            ours = timed.get((our_library, our_name, dtype))
            theirs = timed.get((their_library, their_name, dtype))
            if ours is None or theirs is None:
                continue
            comparisons.append(
                {
                    "dtype": dtype,
                    "jaxem": f"{our_library} {our_name}",
                    "baseline": f"{their_library} {their_name}",
                    "jaxem_ms": ours["ms"],
                    "baseline_ms": theirs["ms"],
                    "ratio": theirs["ms"] / ours["ms"],
                    "cpus": [ours["cpus"], theirs["cpus"]],
                }
            )
    return {
        "T": steps,
        "state_dim": state_dim,
        "emission_dim": emission_dim,
        "repeats": args.kalman_repeats,
        "model": {k: v.tolist() for k, v in model.items()},
        "libraries": libraries,
        "max_abs_difference_of_smoothed_means": checks,
        "comparisons": comparisons,
    }


# ================================================================= printing


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def _cpus(value: int | None) -> str:
    return "all" if value is None else str(value)


def format_factor_analysis(part: dict[str, Any]) -> str:
    reference = part["reference_mean_log_likelihood"]
    lines = [
        f"Factor analysis, {part['n']} × {part['D']}, q = {part['q']}: wall seconds per fit "
        f"(median of {part['repeats']} interleaved rounds [min–max]) to the same mean "
        f"log-likelihood: L* = {reference:.9f} ({part['reference_from']}), target L* − "
        f"{part['relative_gap']:g}·|L*| = {part['target_mean_log_likelihood']:.9f}",
    ]
    header = (
        f"  {'variant':<26} {'settings':<20} {'s':>7} {'[min–max]':>15} {'iter':>5} "
        f"{'mean log-lik':>15} {'(L*−ll)/|L*|':>12} {'reached':>7} {'compile s':>9}"
    )
    lines += [header, "  " + "-" * (len(header) - 2)]
    for name, row in part["variants"].items():
        settings = row["settings"]
        if row["library"] == "scikit-learn":
            text = f"tol={settings['tol']:g} {row['blas_threads']} BLAS thr."
        else:
            text = f"tol={settings['tol']:g} max={settings['max_iter']}"
        spread = f"[{_fmt(row['min_s'])}–{_fmt(row['max_s'])}]"
        lines.append(
            f"  {name:<26} {text:<20} {_fmt(row['s']):>7} {spread:>15} {row['n_iter']:>5} "
            f"{row['mean_log_likelihood']:>15.9f} {row['relative_gap_to_reference']:>12.1e} "
            f"{'yes' if row['reached_target'] else 'NO':>7} {_fmt(row.get('compile_s'), '.1f'):>9}"
        )
    lines += ["", "  scikit-learn seconds ÷ jaxem seconds (higher: jaxem faster):"]
    for row in part["comparisons"]:
        ratio = "— (did not reach the target)" if row["ratio"] is None else f"{row['ratio']:.2f}×"
        lines.append(f"    {row['baseline']:<24} ÷ {row['jaxem']:<24} {ratio}")
    return "\n".join(lines)


def format_gmm_missing(part: dict[str, Any]) -> str:
    lines = [
        f"GaussianMixture EM, complete data vs {part['missing_fraction']:.0%} missing completely "
        "at random (NaN), same start, tol=0: ms per iteration (median over rounds of the slope "
        "[min–max])",
    ]
    header = (
        f"  {'type':<5} {'dtype':<8} {'n×D×K':<13} {'cpus':>4} {'complete ms/it':>22} "
        f"{'missing ms/it':>24} {'missing÷complete':>16} {'compile s (c, m)':>17}"
    )
    lines += [header, "  " + "-" * (len(header) - 2)]
    for row in part["rows"]:
        size = f"{row['n']}×{row['D']}×{row['K']}"
        start = f"  {row['covariance_type']:<5} {row['dtype']:<8} {size:<13}"
        if not row["measured"]:
            lines.append(f"{start} not measured: {row['attempts'][-1]['outcome']}")
        else:
            complete, missing = row["variants"]["complete"], row["variants"]["missing"]

            def cell(v: dict[str, Any]) -> str:
                return (
                    f"{_fmt(v['ms_per_iter'], '.1f')} "
                    f"[{_fmt(v['ms_per_iter_min'], '.0f')}–{_fmt(v['ms_per_iter_max'], '.0f')}]"
                )

            lines.append(
                f"{start} {_cpus(row['cpus']):>4} {cell(complete):>22} {cell(missing):>24} "
                f"{row['missing_over_complete']:>15.1f}× "
                f"{_fmt(complete['compile_s'], '.1f'):>8}, {_fmt(missing['compile_s'], '.1f'):<7}"
            )
        for attempt in row.get("attempts", []):
            frames = (attempt.get("native_stack") or {}).get("frames", {})
            lines.append(
                f"    {_cpus(attempt['cpus'])} CPUs: {attempt['outcome']} at "
                f"'{attempt['stage']}'" + (f"; native stack: {frames}" if frames else "")
            )
    lines += ["", "  scikit-learn: " + part["scikit_learn"]]
    return "\n".join(lines)


def format_kalman(part: dict[str, Any]) -> str:
    lines = [
        f"Kalman smoother, one sequence, T={part['T']}, S={part['state_dim']}, "
        f"D={part['emission_dim']}: ms per call (median of {part['repeats']} [min–max]), jitted",
    ]
    header = (
        f"  {'library':<8} {'dtype':<8} {'variant':<11} {'cpus':>4} {'ms':>9} {'[min–max]':>15} "
        f"{'compile s':>9} {'XLA temp MiB':>12} {'log-likelihood':>18}"
    )
    lines += [header, "  " + "-" * (len(header) - 2)]
    for key, report in part["libraries"].items():
        library, dtype = key.split()
        if report.get("outcome") != "ok" or "variants" not in report:
            why = report.get("skipped") or report.get("outcome")
            lines.append(f"  {library:<8} {dtype:<8} not measured: {why}")
        for name, row in report.get("variants", {}).items():
            temp = row["memory"].get("temp_bytes")
            lines.append(
                f"  {library:<8} {dtype:<8} {name:<11} {_cpus(report.get('cpus')):>4} "
                f"{_fmt(row['ms'], '.1f'):>9} "
                f"{'[' + _fmt(row['ms_min'], '.0f') + '–' + _fmt(row['ms_max'], '.0f') + ']':>15} "
                f"{_fmt(row['compile_s'], '.1f'):>9} "
                f"{_fmt(None if temp is None else temp / 2**20, '.0f'):>12} "
                f"{row['log_likelihood']:>18.6f}"
            )
        for attempt in report.get("attempts", []):
            frames = (attempt.get("native_stack") or {}).get("frames", {})
            lines.append(
                f"    {library} {dtype}, {_cpus(attempt['cpus'])} CPUs: {attempt['outcome']} at "
                f"'{attempt['stage']}'" + (f"; native stack: {frames}" if frames else "")
            )
    lines += ["", "  ratios (baseline ms ÷ jaxem ms; higher: jaxem faster):"]
    for row in part["comparisons"]:
        lines.append(
            f"    {row['dtype']:<8} {row['baseline']:<19} ÷ {row['jaxem']:<17} "
            f"{row['ratio']:>6.2f}×   (cpus {_cpus(row['cpus'][1])} / {_cpus(row['cpus'][0])})"
        )
    lines += ["", "  max |difference| of the smoothed means:"]
    for name, value in part["max_abs_difference_of_smoothed_means"].items():
        if value is not None:
            lines.append(f"    {name:<50} {value:.2e}")
    return "\n".join(lines)


# --------------------------------------------------------------------- main


def _size(text: str, count: int, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.lower().replace("x", ",").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name} must be {count} integers; got {text!r}") from None
    if len(values) != count or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{name} must be {count} positive integers; got {text!r}")
    return values


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only", help=f"comma-separated parts to run: {', '.join(PARTS)} (default: all)"
    )
    parser.add_argument("--dtype", action="append", choices=DTYPES, help="dtype (repeatable)")
    parser.add_argument("--repeats", type=int, help="rounds for every part (default 3; quick 2)")
    size = lambda count, name: lambda text: _size(text, count, name)
    parser.add_argument("--fa-size", type=size(3, "--fa-size"), help="n,D,q (100000,64,8)")
    parser.add_argument(
        "--fa-cap",
        type=int,
        default=200,
        help="iterations of the probe run that chooses jaxem.fit's stopping rule (200)",
    )
    parser.add_argument("--gmm-size", type=size(3, "--gmm-size"), help="n,D,K (100000,8,8)")
    parser.add_argument(
        "--gmm-iterations-full",
        type=size(2, "--gmm-iterations-full"),
        help="M1,M2 of the slope for full covariances (1,3)",
    )
    parser.add_argument(
        "--gmm-iterations-diag",
        type=size(2, "--gmm-iterations-diag"),
        help="M1,M2 of the slope for diagonal covariances (2,10)",
    )
    parser.add_argument("--kalman-size", type=size(3, "--kalman-size"), help="T,S,D (100000,4,4)")
    parser.add_argument("--dynamax-python", help="a Python with dynamax, for the dynamax worker")
    parser.add_argument("--no-dynamax", action="store_true", help="skip dynamax")
    parser.add_argument(
        "--dynamax-parallel",
        action="store_true",
        help="also time dynamax's parallel_inference.lgssm_smoother (deadlocks on 2-core CPUs "
        "under jaxlib 0.10.2, then reruns on one CPU)",
    )
    parser.add_argument(
        "--stall-s",
        type=float,
        default=15.0,
        help="a worker using no CPU for this long is deadlocked (15)",
    )
    parser.add_argument(
        "--blas-threads", type=int, help="scikit-learn's BLAS threads (default: by probe)"
    )
    parser.add_argument("--out", type=Path, help="JSON output path")
    args = parser.parse_args(argv)
    args.only = [p for p in (args.only or ",".join(PARTS)).split(",") if p]
    unknown = sorted(set(args.only) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    repeats = args.repeats or (2 if args.quick else 3)
    if repeats < 1:
        parser.error("--repeats must be >= 1")
    args.fa_repeats = args.gmm_repeats = args.kalman_repeats = repeats
    args.dtype = args.dtype or list(DTYPES)
    args.fa_size = args.fa_size or ([5_000, 16, 4] if args.quick else [100_000, 64, 8])
    args.gmm_size = args.gmm_size or ([5_000, 8, 8] if args.quick else [100_000, 8, 8])
    args.kalman_size = args.kalman_size or ([2_000, 4, 4] if args.quick else [100_000, 4, 4])
    args.gmm_iterations_full = args.gmm_iterations_full or [1, 3]
    args.gmm_iterations_diag = args.gmm_iterations_diag or [2, 10]
    for name in ("gmm_iterations_full", "gmm_iterations_diag"):
        m1, m2 = getattr(args, name)
        if m1 >= m2:
            parser.error(f"--{name.replace('_', '-')} needs M1 < M2")
    if args.fa_cap < 2:
        parser.error("--fa-cap must be >= 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--worker"]:
        return worker_main(*argv[1:3])
    args = parse_args(argv)
    from _json import jsonable

    from gmm import backend_info, machine_info, versions
    from hmm import cpu_snapshot, other_cpu_cores

    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()
    load = machine["load_average"]
    report: dict[str, Any] = {
        "benchmark": "continuous",
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "command": " ".join(["python", "bench/continuous.py", *argv]),
        "machine": machine,
        "load_average": load,
        "backend": backend_info(),
        "versions": versions(),
        "parts": args.only,
    }
    if load and load[0] > 1.5:
        report["load_note"] = (
            f"1-minute load average {load[0]:.2f} at the start on {machine['cpu_count']} CPUs: "
            "other work was running; timings are inflated"
        )
    _log(
        f"jax {jax.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind}); "
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}); load {load}"
    )
    texts = []
    others: dict[str, float | None] = {}
    first_snapshot = snapshot = cpu_snapshot()
    with tempfile.TemporaryDirectory(prefix="jaxem-continuous-") as tmp:
        workdir = Path(tmp)
        if "factor-analysis" in args.only:
            report["factor_analysis"] = run_factor_analysis(args)
            texts.append(format_factor_analysis(report["factor_analysis"]))
            others["factor_analysis"] = other_cpu_cores(snapshot, snapshot := cpu_snapshot())
        if "gmm-missing" in args.only:
            report["gmm_missing"] = run_gmm_missing(args, workdir)
            texts.append(format_gmm_missing(report["gmm_missing"]))
            others["gmm_missing"] = other_cpu_cores(snapshot, snapshot := cpu_snapshot())
        if "kalman" in args.only:
            report["kalman"] = run_kalman(args, workdir)
            texts.append(format_kalman(report["kalman"]))
            others["kalman"] = other_cpu_cores(snapshot, snapshot := cpu_snapshot())
    others["whole_run"] = other_cpu_cores(first_snapshot, snapshot)
    report["other_processes_cpu_cores"] = others
    busy = others["whole_run"]
    if busy is not None:
        texts.append(
            f"Other processes kept {busy:.2f} of {machine['cpu_count']} cores busy on average "
            "during the run"
            + (" (the timings above are inflated by them)." if busy > 0.25 else ".")
            + " Per part: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in others.items() if k != "whole_run")
        )
        if busy > 0.25:
            report["load_note_during_run"] = (
                f"other processes used {busy:.2f} cores on average during the run "
                f"({machine['cpu_count']} CPUs): timings are inflated"
            )
    finished = datetime.datetime.now(datetime.timezone.utc)
    report["finished"] = finished.isoformat(timespec="seconds")
    report["wall_s"] = (finished - started).total_seconds()
    report["load_average_at_end"] = list(os.getloadavg())
    print("\n\n".join(texts))
    host = socket.gethostname().split(".")[0] or "host"
    date = datetime.date.today().isoformat()
    suffix = "-quick" if args.quick else ""
    out = args.out or RESULTS_DIR / f"continuous-{host}-{jax.default_backend()}-{date}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jsonable(report), indent=1, allow_nan=False) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
