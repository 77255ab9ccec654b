"""Benchmark generalized EM: gradient M-steps against the closed form, and
mixture-of-experts fits.

Two parts, in float64 and float32:

* ``gem-vs-closed``: the same full-covariance Gaussian mixture fitted by the
  closed-form M-step (``jaxem.GaussianMixture``) and by gradient M-steps on
  ``Q`` (``jaxem.LogJointModel`` with the mixture's log-joint, simplex and
  positive-definite constraints) with L-BFGS and with Adam, from the same
  starting parameters. Reported: milliseconds per EM iteration (slope between
  two iteration counts with ``tol=0``, best of ``--repeats`` interleaved
  calls), the ratio to the closed form, compile time, and how many EM
  iterations each needs to come within 1e-4 (relative) of the closed form's
  converged log-likelihood.
* ``moe``: ``jaxem.MixtureOfExperts`` (linear-Gaussian experts, ECM: experts in
  closed form, gate by L-BFGS steps; and softmax experts, all by gradient
  steps): milliseconds per EM iteration, compile time, and the wall time of a
  4-restart fit to convergence.

Run from the repository root::

    python bench/gem.py              # about 15 minutes on a 2-core CPU
    python bench/gem.py --quick      # smoke run

Results go to ``bench/results/gem-<host>-<backend>-<date>.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxem
from jaxem import gem

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gmm import (
    RESULTS_DIR,
    Runner,
    _jsonable,
    backend_info,
    machine_info,
    make_data,
    measure_slopes,
    start_values,
    versions,
    x64,
)

DTYPES = ("float64", "float32")
CLOSE = 1e-4  # relative gap to the closed form's log-likelihood that counts as reached


class GMMParams(NamedTuple):
    weights: jax.Array
    means: jax.Array
    covariances: jax.Array


def gmm_log_joint(params: GMMParams, x: jax.Array) -> jax.Array:
    """``log π_k + log N(x_i | μ_k, Σ_k)``, ``(n, K)``, written plainly with
    Cholesky factors (what a user would write)."""
    factors = jnp.linalg.cholesky(params.covariances)  # (K, D, D)

    def component(mean, factor):
        whitened = jax.scipy.linalg.solve_triangular(factor, (x - mean).T, lower=True)
        log_det = jnp.sum(jnp.log(jnp.diagonal(factor)))
        dim = x.shape[1]
        return -0.5 * jnp.sum(whitened**2, axis=0) - log_det - 0.5 * dim * jnp.log(2 * jnp.pi)

    per_component = jax.vmap(component, out_axes=1)(params.means, factors)
    return jnp.log(params.weights) + per_component


def gem_model(optimizer: optax.GradientTransformation, num_steps: int) -> jaxem.LogJointModel:
    step = gem.GradientMStep(
        optimizer,
        num_steps=num_steps,
        constraints=GMMParams(gem.simplex, None, gem.positive_definite),
    )
    return jaxem.LogJointModel(gmm_log_joint, _unused_init, gradient_step=step)


def _unused_init(key: jax.Array, x: jax.Array) -> GMMParams:
    """Only its shapes matter (the benchmark passes ``init_params``)."""
    k = 8
    dim = x.shape[1]
    return GMMParams(
        jnp.full(k, 1.0 / k, x.dtype),
        x[:k],
        jnp.broadcast_to(jnp.eye(dim, dtype=x.dtype), (k, dim, dim)),
    )


def fit_runner(model, x, params):
    key = jax.random.key(0)

    def run(m: int):
        return jax.block_until_ready(
            jaxem.fit(model, x, key=key, init_params=params, max_iter=m, tol=0.0)
        )

    return run


def check_ran(result: jaxem.FitResult, m: int) -> None:
    if int(result.num_iter[0]) != m:
        raise RuntimeError(f"ran {int(result.num_iter[0])} iterations, expected {m}")


def iterations_to_reach(history: np.ndarray, target: float) -> int | None:
    """First iteration whose objective is within ``CLOSE`` of ``target``."""
    reached = np.flatnonzero(history >= target - CLOSE * abs(target))
    return int(reached[0]) if reached.size else None


def run_gem_vs_closed(quick: bool, repeats: int) -> list[dict[str, Any]]:
    n, dim, k = (2_000, 2, 8) if quick else (20_000, 4, 8)
    iterations = (2, 6) if quick else (3, 13)
    num_steps = 10
    data = make_data(n, dim, k, "full", seed=0)
    start = start_values(data, k, "full", seed=1)
    rows = []
    for dtype in DTYPES:
        with x64(dtype):
            x = jnp.asarray(data.astype(dtype))
            closed = jaxem.GaussianMixture(k, reg_covar=0.0)
            closed_params = jaxem.models.GaussianMixtureParams(
                *(
                    jnp.asarray(getattr(start, f).astype(dtype))
                    for f in ("weights", "means", "covariances")
                )
            )
            variants = {
                "closed form": (closed, closed_params),
                f"L-BFGS x{num_steps}": (gem_model(optax.lbfgs(), num_steps), None),
                f"Adam(0.05) x{num_steps}": (gem_model(optax.adam(0.05), num_steps), None),
            }
            runners = {}
            for name, (model, params) in variants.items():
                if params is None:
                    params = GMMParams(*closed_params[:3])
                    variants[name] = (model, params)
                runners[name] = Runner(fit_runner(model, x, params), check_ran)
            print(f"  gem-vs-closed {dtype}: {', '.join(runners)}", file=sys.stderr, flush=True)
            slopes = measure_slopes(runners, iterations, repeats)
            max_iter = 100 if quick else 300
            converged = {}
            for name, (model, params) in variants.items():
                result = jaxem.fit(
                    model, x, key=jax.random.key(0), init_params=params, max_iter=max_iter, tol=0.0
                )
                converged[name] = (
                    np.asarray(result.history[0], float),
                    float(result.log_likelihood),
                )
            target = converged["closed form"][1]
            base = slopes["closed form"].ms_per_iter
            for name, slope in slopes.items():
                history, final = converged[name]
                rows.append(
                    {
                        "config": "gem-vs-closed",
                        "variant": name,
                        "dtype": dtype,
                        "n": n,
                        "D": dim,
                        "K": k,
                        "gem_steps_per_m_step": None if name == "closed form" else num_steps,
                        "ms_per_iter": slope.ms_per_iter,
                        "ratio_to_closed_form": slope.ms_per_iter / base,
                        "compile_s": slope.compile_s,
                        "recompiles": slope.recompiles,
                        "iterations_to_closed_form_loglik": iterations_to_reach(history, target),
                        "final_log_likelihood": final,
                        "closed_form_log_likelihood": target,
                        "max_iter": max_iter,
                        "slope": slope.to_json(),
                    }
                )
    return rows


def piecewise_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs ``(n, 2)``, a piecewise-linear regression target ``(n,)`` with
    three regimes along the first input, and class labels ``(n,)`` from the
    regime and the sign of the target."""
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(-3.0, 3.0, size=(n, 2))
    regime = np.digitize(inputs[:, 0], [-1.0, 1.0])
    slopes = np.array([[-2.0, 0.5], [1.0, -1.0], [3.0, 0.0]])
    offsets = np.array([-1.0, 0.5, -2.0])
    targets = np.sum(inputs * slopes[regime], axis=1) + offsets[regime]
    targets = targets + 0.3 * rng.standard_normal(n)
    labels = (regime + (targets > 0)) % 3
    return inputs, targets, labels.astype(float)


def run_moe(quick: bool, repeats: int) -> list[dict[str, Any]]:
    n = 2_000 if quick else 20_000
    k = 3
    iterations = (2, 6) if quick else (3, 13)
    inputs, targets, labels = piecewise_data(n)
    rows = []
    for dtype in DTYPES:
        with x64(dtype):
            cases = {
                "linear experts": (
                    jaxem.MixtureOfExperts(jaxem.LinearRegression(), k),
                    (jnp.asarray(inputs.astype(dtype)), jnp.asarray(targets.astype(dtype))),
                ),
                "softmax experts": (
                    jaxem.MixtureOfExperts(jaxem.SoftmaxRegression(3), k),
                    (jnp.asarray(inputs.astype(dtype)), jnp.asarray(labels.astype(dtype))),
                ),
            }
            runners, starts = {}, {}
            for name, (model, data) in cases.items():
                starts[name] = model.init(jax.random.key(1), data)
                runners[name] = Runner(fit_runner(model, data, starts[name]), check_ran)
            print(f"  moe {dtype}: {', '.join(runners)}", file=sys.stderr, flush=True)
            slopes = measure_slopes(runners, iterations, repeats)
            for name, (model, data) in cases.items():
                jax.block_until_ready(jaxem.fit(model, data, key=jax.random.key(2), num_restarts=4))
                begin = time.perf_counter()
                result = jax.block_until_ready(
                    jaxem.fit(model, data, key=jax.random.key(3), num_restarts=4)
                )
                fit_s = time.perf_counter() - begin
                slope = slopes[name]
                rows.append(
                    {
                        "config": "moe",
                        "variant": name,
                        "dtype": dtype,
                        "n": n,
                        "P": inputs.shape[1],
                        "K": k,
                        "ms_per_iter": slope.ms_per_iter,
                        "compile_s": slope.compile_s,
                        "recompiles": slope.recompiles,
                        "fit_4_restarts_s": fit_s,
                        "fit_iterations": np.asarray(result.num_iter).tolist(),
                        "fit_converged": np.asarray(result.converged).tolist(),
                        "fit_log_likelihood": float(result.log_likelihood),
                        "slope": slope.to_json(),
                    }
                )
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'config':14} {'variant':24} {'dtype':8} {'ms/iter':>9} {'x closed':>9} "
        f"{'compile s':>9} {'iters to closed':>15} {'4-restart fit s':>15}",
        "-" * 112,
    ]
    for row in rows:
        ratio = row.get("ratio_to_closed_form")
        reach = row.get("iterations_to_closed_form_loglik", "")
        lines.append(
            f"{row['config']:14} {row['variant']:24} {row['dtype']:8} {row['ms_per_iter']:9.2f} "
            f"{'' if ratio is None else f'{ratio:.2f}':>9} {row['compile_s'] or 0.0:9.2f} "
            f"{'' if reach is None else str(reach):>15} "
            f"{'' if 'fit_4_restarts_s' not in row else format(row['fit_4_restarts_s'], '.2f'):>15}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed rounds (default 5; 2 quick)"
    )
    parser.add_argument("--only", choices=("gem-vs-closed", "moe"), help="run one part")
    parser.add_argument("--out", type=Path, help="JSON output path")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    started = datetime.datetime.now(datetime.timezone.utc)
    report: dict[str, Any] = {
        "benchmark": "gem",
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine_info(),
        "backend": backend_info(),
        "versions": versions() | {"optax": optax.__version__},
        "repeats": repeats,
    }
    rows = []
    if args.only in (None, "gem-vs-closed"):
        rows += run_gem_vs_closed(args.quick, repeats)
    if args.only in (None, "moe"):
        rows += run_moe(args.quick, repeats)
    report["results"] = rows
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["load_average_at_end"] = list(os.getloadavg())
    print(format_rows(rows))
    host = socket.gethostname().split(".")[0] or "host"
    date = datetime.date.today().isoformat()
    suffix = "-quick" if args.quick else ""
    out = args.out or RESULTS_DIR / f"gem-{host}-{jax.default_backend()}-{date}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(report), indent=1, allow_nan=False) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
