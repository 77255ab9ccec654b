"""Benchmark SQUAREM (``jaxem.fit(..., accelerate="squarem")``) against plain
EM on problems where EM is slow: M-steps, E-steps and wall time to reach the
optimum.

Problems (``--only``, comma-separated; all float64, ``gmm-overlap`` also
float32):

* ``gmm-overlap``: ``GaussianMixture(3, "full")`` on 10⁴ × 2 draws of three
  heavily overlapping Gaussians.
* ``factor-analysis``: ``FactorAnalysis(4)`` on 10⁴ × 20 draws with weak
  factors (loading scales 1, 0.5, 0.2, 0.08).
* ``hmm-overlap``: ``HMM(Gaussian("diag"), 3)`` on 4 sequences of 1000
  steps, states with close means and a weakly sticky chain.
* ``hmm-boundary``: the same model and generating chain, another sample,
  whose optimum is on the boundary (an initial probability exactly 0, a
  transition probability tending to 0).
* ``lds``: ``LinearGaussianSSM(3)`` on 20 sequences of 100 steps, 5
  emission dimensions, slow dynamics and low signal-to-noise.
* ``poisson-mixture``: ``Mixture(Poisson(), 2)`` on 10⁴ counts with rates 4
  and 6.
* ``gmm-missing``: ``GaussianMixture(3, "diag")`` on 10⁴ × 4 overlapping
  blobs with 20 % of the entries missing (NaN).

For each problem and dtype, from one set of starting parameters
(``model.init`` with a fixed key, passed as ``init_params`` to both, one
restart):

1. The optimum ``ℓ*``: SQUAREM and plain EM run long with ``tol=0`` (probe
   runs); ``ℓ*`` is the higher final objective (the mean per-observation
   log-likelihood, ``FitResult.log_likelihood``). The target is
   ``ℓ* − gap·|ℓ*|`` with ``gap = 1e-8`` in float64 and ``1e-6`` in float32
   (1e-8 is below float32's resolution). A probe that does not reach the
   target is run again with twice the iterations (up to ``--max-doublings``).
2. From each probe's ``history`` (the objective entering every iteration):
   the first iteration count ``m`` after which the objective is at the
   target. A fit with ``tol=0, max_iter=m`` then reaches it (checked).
3. Those two fits are timed: one first call (compiles), then ``--repeats``
   interleaved rounds (order alternating); the median with its spread.
   M-steps are ``FitResult.num_m_steps`` (EM-map evaluations); E-steps are
   ``M + 1`` for plain EM and ``1 + 2·M − 2·c`` for ``c`` SQUAREM
   iterations with ``M`` M-steps (an iteration that extrapolates takes 3
   M-steps and 4 E-steps, one that does not 2 and 2; one E-step scores the
   start; checked by counting the engine's E-step calls).
4. Same optimum: in float64, the probe that ended lower is continued (its
   own method, from its final parameters, ``max_iter`` as its probe) until
   the two final objectives agree to 1e-12 (relative; at most
   ``--max-doublings`` times); then the largest absolute difference between
   their parameters, and between the two timed fits', in identified
   coordinates (mixture components and HMM states sorted by their first
   mean or rate; factor analysis: the mean, ``W Wᵀ + Ψ`` and ``Ψ``; the
   state-space model, whose state is defined up to ``z → T z + c``: ``R``,
   the eigenvalues of ``A``, the emission means ``E[y_k]`` and the products
   ``H Aᵏ S₀ Aᵏᵀ Hᵀ``, ``H Aᵏ Q Hᵀ``, ``k = 0..3``). Monotonicity: the
   largest relative decrease in each probe's history, and the fit's
   ``decreased`` flag. In float32, the timed fits' parameters are also
   scored in float64 against the float64 ``ℓ*``.

Each problem runs in a fresh process of this file (``--worker``), watched for
CPU progress as in ``continuous.py`` (jaxlib 0.10.2's batched CPU LAPACK can
deadlock on 2 threads): a stalled worker is killed and rerun on one CPU.

Run from the repository root::

    python bench/accelerate.py --repeats 5   # about 10 minutes on a busy 2-core CPU
    python bench/accelerate.py --quick       # gmm-overlap and factor-analysis, small: ~1 minute
    python bench/accelerate.py --only lds,hmm-overlap --repeats 5

Results go to ``bench/results/accelerate-<host>-<backend>-<date>[-quick].json``
(or ``--out``); see ``bench/README.md`` for the fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
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
VARIANTS = ("plain", "squarem")
#: Relative gap to ℓ* that counts as reached, per dtype.
GAPS = {"float64": 1e-8, "float32": 1e-6}
#: Relative agreement of the two long runs' objectives before their
#: parameters are compared (float64).
POLISH_AGREEMENT = 1e-12
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
#: Problems of ``--quick`` unless ``--only`` is given (each compiles four
#: programs; the state-space model's take 20-30 s on a busy 2-core CPU).
QUICK_PROBLEMS = ("gmm-overlap", "factor-analysis")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ================================================================ problems


@dataclasses.dataclass(frozen=True)
class Problem:
    """One slow problem.

    Attributes:
      name: the ``--only`` name.
      what: a one-line description (printed and in the JSON).
      make: ``make(quick) -> (model, data (float64 numpy), sizes)``.
      canonical: ``canonical(params) -> {name: float64 array}`` in
        identified coordinates (for comparing two fits' parameters).
      caps: first probe ``max_iter`` (plain, SQUAREM); quick ones beside.
      dtypes: the dtypes measured.
    """

    name: str
    what: str
    make: Callable[[bool], tuple[Any, Any, dict[str, Any]]]
    canonical: Callable[[Any], dict[str, np.ndarray]]
    caps: tuple[int, int]
    quick_caps: tuple[int, int]
    dtypes: tuple[str, ...] = ("float64",)


def _np(value: Any) -> np.ndarray:
    return np.asarray(value, np.float64)


def _sorted_mixture(weights: Any, key: np.ndarray, **arrays: Any) -> dict[str, np.ndarray]:
    order = np.argsort(key)
    return {"weights": _np(weights)[order]} | {k: _np(v)[order] for k, v in arrays.items()}


def make_gmm_overlap(quick: bool):
    import jaxem

    n = 2_000 if quick else 10_000
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [1.0, 0.5], [0.3, 1.2]])
    covariances = np.array(
        [[[1.0, 0.3], [0.3, 0.8]], [[0.9, -0.2], [-0.2, 1.1]], [[0.7, 0.1], [0.1, 0.9]]]
    )
    labels = rng.choice(3, n, p=[0.4, 0.35, 0.25])
    factors = np.linalg.cholesky(covariances)
    x = means[labels] + np.einsum("nij,nj->ni", factors[labels], rng.standard_normal((n, 2)))
    sizes = {"n": n, "D": 2, "K": 3, "covariance_type": "full"}
    return jaxem.GaussianMixture(3, covariance_type="full"), x, sizes


def canonical_gmm(params: Any) -> dict[str, np.ndarray]:
    means = _np(params.means)
    return _sorted_mixture(params.weights, means[:, 0], means=means, covariances=params.covariances)


def make_factor_analysis(quick: bool):
    import jaxem

    n, dim, q = (2_000, 10, 3) if quick else (10_000, 20, 4)
    rng = np.random.default_rng(0)
    scales = np.array([1.0, 0.5, 0.2, 0.08])[:q]
    loadings = rng.normal(size=(dim, q)) * scales
    noise = rng.uniform(0.2, 2.0, dim)
    mean = rng.normal(size=dim)
    x = (
        mean
        + rng.standard_normal((n, q)) @ loadings.T
        + np.sqrt(noise) * rng.standard_normal((n, dim))
    )
    sizes = {"n": n, "D": dim, "q": q, "loading_scales": scales.tolist()}
    return jaxem.FactorAnalysis(q), x, sizes


def canonical_factor_analysis(params: Any) -> dict[str, np.ndarray]:
    loadings, noise = _np(params.loadings), _np(params.noise)
    return {
        "mean": _np(params.mean),
        "covariance": loadings @ loadings.T + np.diag(noise),
        "noise": noise,
    }


def make_hmm_overlap(quick: bool):
    import jaxem

    batch, steps = (2, 300) if quick else (4, 1000)
    k, dim = 3, 2
    rng = np.random.default_rng(0)
    transitions = np.full((k, k), 0.2 / (k - 1))
    np.fill_diagonal(transitions, 0.8)
    means = np.array([[0.0, 0.0], [0.6, 0.2], [0.1, 0.6]])
    scales = np.array([[1.0, 0.8], [0.9, 1.0], [0.8, 1.1]])
    states = np.empty((batch, steps), int)
    states[:, 0] = rng.choice(k, batch)
    cumulative = np.cumsum(transitions, axis=1)
    for t in range(1, steps):
        u = rng.random(batch)
        states[:, t] = np.minimum((u[:, None] > cumulative[states[:, t - 1]]).sum(axis=1), k - 1)
    x = means[states] + scales[states] * rng.standard_normal((batch, steps, dim))
    sizes = {"B": batch, "T": steps, "K": k, "D": dim, "stay_probability": 0.8}
    return jaxem.HMM(jaxem.Gaussian("diag"), k), x, sizes


def make_hmm_boundary(quick: bool):
    """The states of ``make_hmm_overlap`` drawn step by step (another
    sample): here the maximum-likelihood initial distribution has an exact
    zero and one transition probability tends to zero."""
    import jaxem

    batch, steps = (2, 300) if quick else (4, 1000)
    k, dim = 3, 2
    rng = np.random.default_rng(0)
    transitions = np.full((k, k), 0.2 / (k - 1))
    np.fill_diagonal(transitions, 0.8)
    means = np.array([[0.0, 0.0], [0.6, 0.2], [0.1, 0.6]])
    scales = np.array([[1.0, 0.8], [0.9, 1.0], [0.8, 1.1]])
    x = np.empty((batch, steps, dim))
    for b in range(batch):
        state = rng.choice(k)
        for t in range(steps):
            x[b, t] = means[state] + scales[state] * rng.standard_normal(dim)
            state = rng.choice(k, p=transitions[state])
    sizes = {"B": batch, "T": steps, "K": k, "D": dim, "stay_probability": 0.8}
    return jaxem.HMM(jaxem.Gaussian("diag"), k), x, sizes


def canonical_hmm(params: Any) -> dict[str, np.ndarray]:
    means = _np(params.emissions.means)
    order = np.argsort(means[:, 0])
    transitions = _np(params.transitions)[np.ix_(order, order)]
    return {
        "initial": _np(params.initial)[order],
        "transitions": transitions,
        "means": means[order],
        "variances": _np(params.emissions.covariances)[order],
    }


def make_lds(quick: bool):
    import jaxem

    batch, steps = (10, 60) if quick else (20, 100)
    s, dim = 3, 5
    rho, angle, state_noise, emission_noise = 0.98, 0.1, 0.02, 1.0
    rng = np.random.default_rng(0)
    dynamics = rho * np.eye(s)
    dynamics[:2, :2] = rho * np.array(
        [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    )
    emission = rng.normal(size=(dim, s))
    x = np.empty((batch, steps, dim))
    z = rng.standard_normal((batch, s))
    for t in range(steps):
        if t:
            z = z @ dynamics.T + np.sqrt(state_noise) * rng.standard_normal((batch, s))
        x[:, t] = z @ emission.T + np.sqrt(emission_noise) * rng.standard_normal((batch, dim))
    sizes = {
        "B": batch,
        "T": steps,
        "S": s,
        "D": dim,
        "dynamics": f"{rho} x rotation({angle}) on 2 states, {rho} on the third",
        "Q": f"{state_noise} I",
        "R": f"{emission_noise} I",
    }
    return jaxem.LinearGaussianSSM(s), x, sizes


def canonical_lds(params: Any) -> dict[str, np.ndarray]:
    """Quantities unchanged by an affine change of the state (``z → T z +
    c``): ``R``, the eigenvalues of ``A``, the emissions' mean ``E[y_k] = H
    μ_k + d`` (``μ_0 = m_0``, ``μ_k = A μ_{k−1} + b``) and the products
    ``H Aᵏ S₀ Aᵏᵀ Hᵀ`` and ``H Aᵏ Q Hᵀ``, ``k = 0..3``."""
    a, h = _np(params.dynamics_weights), _np(params.emission_weights)
    q, s0 = _np(params.dynamics_covariance), _np(params.initial_covariance)
    mean, b, d = _np(params.initial_mean), _np(params.dynamics_bias), _np(params.emission_bias)
    eigenvalues = np.sort_complex(np.linalg.eigvals(a))
    out = {
        "R": _np(params.emission_covariance),
        "eigenvalues_of_A": np.stack([eigenvalues.real, eigenvalues.imag]),
    }
    power = np.eye(a.shape[0])
    for k in range(4):
        ha = h @ power
        out[f"E[y_{k}]"] = h @ mean + d
        out[f"H A^{k} S0 A^{k}' H'"] = ha @ s0 @ ha.T
        out[f"H A^{k} Q H'"] = ha @ q @ h.T
        power = power @ a
        mean = a @ mean + b
    return out


def make_poisson_mixture(quick: bool):
    import jaxem

    n = 2_000 if quick else 10_000
    rng = np.random.default_rng(0)
    rates = np.where(rng.random(n) < 0.5, 4.0, 6.0)
    x = rng.poisson(rates)[:, None].astype(np.float64)
    sizes = {"n": n, "D": 1, "K": 2, "rates": [4.0, 6.0], "weights": [0.5, 0.5]}
    return jaxem.Mixture(jaxem.Poisson(), 2), x, sizes


def canonical_poisson(params: Any) -> dict[str, np.ndarray]:
    rates = _np(params.components.rates)
    return _sorted_mixture(params.weights, rates[:, 0], rates=rates)


def make_gmm_missing(quick: bool):
    import jaxem

    n, dim, k, fraction = (2_000 if quick else 10_000), 4, 3, 0.2
    rng = np.random.default_rng(0)
    means = 0.8 * rng.normal(size=(k, dim))
    x = means[rng.choice(k, n)] + rng.standard_normal((n, dim))
    mask = rng.random(x.shape) < fraction
    empty = np.flatnonzero(mask.all(axis=1))
    mask[empty, rng.integers(0, dim, size=empty.size)] = False
    x[mask] = np.nan
    sizes = {
        "n": n,
        "D": dim,
        "K": k,
        "covariance_type": "diag",
        "missing_fraction": float(mask.mean()),
    }
    return jaxem.GaussianMixture(k, covariance_type="diag"), x, sizes


PROBLEMS = {
    p.name: p
    for p in (
        Problem(
            "gmm-overlap",
            "GaussianMixture(3, 'full'), three heavily overlapping 2-D Gaussians",
            make_gmm_overlap,
            canonical_gmm,
            (6_000, 600),
            (4_000, 300),
            DTYPES,
        ),
        Problem(
            "factor-analysis",
            "FactorAnalysis(4), weak factors (loading scales 1, 0.5, 0.2, 0.08)",
            make_factor_analysis,
            canonical_factor_analysis,
            (3_000, 300),
            (2_000, 200),
        ),
        Problem(
            "hmm-overlap",
            "HMM(Gaussian('diag'), 3), close state means, stay probability 0.8",
            make_hmm_overlap,
            canonical_hmm,
            (12_000, 1_500),
            (3_000, 400),
        ),
        Problem(
            "hmm-boundary",
            "HMM(Gaussian('diag'), 3) as hmm-overlap, another sample: optimum on the boundary",
            make_hmm_boundary,
            canonical_hmm,
            (6_000, 1_500),
            (3_000, 400),
        ),
        Problem(
            "lds",
            "LinearGaussianSSM(3), slow dynamics, low signal-to-noise",
            make_lds,
            canonical_lds,
            (2_000, 300),
            (1_000, 200),
        ),
        Problem(
            "poisson-mixture",
            "Mixture(Poisson(), 2), rates 4 and 6",
            make_poisson_mixture,
            canonical_poisson,
            (3_000, 300),
            (2_000, 200),
        ),
        Problem(
            "gmm-missing",
            "GaussianMixture(3, 'diag'), overlapping 4-D blobs, 20% of entries NaN",
            make_gmm_missing,
            canonical_gmm,
            (3_000, 300),
            (2_000, 200),
        ),
    )
}


# ============================================================ measurements


class CompileMonitor:
    """XLA compilations while active (``jax.monitoring`` events)."""

    def __init__(self) -> None:
        self.compilations = 0
        self.compile_seconds = 0.0

    def _listener(self, event: str, duration: float, **_: Any) -> None:
        if event == BACKEND_COMPILE_EVENT:
            self.compilations += 1
            self.compile_seconds += duration

    def __enter__(self) -> CompileMonitor:
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc: Any) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)


def _fit(model, x, init, variant: str, max_iter: int):
    import jaxem

    return jax.block_until_ready(
        jaxem.fit(
            model,
            x,
            key=jax.random.key(0),
            init_params=init,
            tol=0.0,
            max_iter=max_iter,
            accelerate=None if variant == "plain" else "squarem",
        )
    )


def _history(result: Any) -> np.ndarray:
    return np.asarray(result.history[0], np.float64)


def first_reach(result: Any, target: float) -> int | None:
    """The fewest iterations after which ``result``'s run was at ``target``:
    ``i`` for the first ``history[i] >= target`` (the objective entering
    iteration ``i``, i.e. after ``i`` iterations), ``num_iter`` if only the
    final objective is, else ``None``."""
    history = _history(result)
    reached = np.flatnonzero(np.nan_to_num(history, nan=-np.inf) >= target)
    if reached.size:
        return int(reached[0])
    if float(result.log_likelihood) >= target:
        return int(result.num_iter[0])
    return None


def largest_decrease(result: Any, scale: float) -> float:
    """The largest decrease between successive objectives of the run (its
    history and final value), relative to ``scale``; ``0`` if none."""
    values = _history(result)
    values = np.append(values[np.isfinite(values)], float(result.log_likelihood))
    steps = np.diff(values)
    return float(max(0.0, -steps.min()) / scale) if steps.size else 0.0


def e_steps(variant: str, m_steps: int, iterations: int) -> int:
    """E-steps of a fit: one scores the start; a plain iteration takes one,
    a SQUAREM iteration 4 when it extrapolates (3 M-steps), else 2."""
    if variant == "plain":
        return m_steps + 1
    return 1 + 2 * m_steps - 2 * iterations


def compare(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, Any]:
    per_key = {k: float(np.max(np.abs(a[k] - b[k]))) if a[k].size else 0.0 for k in a}
    scale = {k: float(np.max(np.abs(a[k]))) if a[k].size else 0.0 for k in a}
    return {
        "max_abs_difference": max(per_key.values()),
        "per_parameter": per_key,
        "parameter_scale": scale,
    }


def _float64_score(model, x64: np.ndarray, params: Any) -> float:
    """The float64 objective of (float32) ``params`` on the float64 data."""
    import jaxem

    with jax.enable_x64(True):
        cast = jax.tree.map(lambda leaf: jnp.asarray(np.asarray(leaf, np.float64)), params)
        result = jaxem.fit(
            model, jnp.asarray(x64), key=jax.random.key(0), init_params=cast, max_iter=0
        )
        return float(result.log_likelihood)


def run_case(
    problem: Problem,
    model: Any,
    data: np.ndarray,
    init64: Any,
    dtype: str,
    task: dict[str, Any],
    stage: Callable[[str], None],
    reference64: float | None,
) -> dict[str, Any]:
    """Probe, choose the iteration counts, time, compare: one dtype."""
    gap = GAPS[dtype]
    caps = dict(zip(VARIANTS, problem.quick_caps if task["quick"] else problem.caps, strict=True))
    with jax.enable_x64(dtype == "float64"):
        x = jnp.asarray(data.astype(dtype))
        init = jax.tree.map(lambda leaf: jnp.asarray(np.asarray(leaf).astype(dtype)), init64)
        probes: dict[str, Any] = {}
        probe_log: list[dict[str, Any]] = []

        def probe(variant: str) -> None:
            stage(f"{dtype} probe {variant} max_iter={caps[variant]}")
            begin = time.perf_counter()
            result = _fit(model, x, init, variant, caps[variant])
            seconds = time.perf_counter() - begin
            probes[variant] = result
            probe_log.append(
                {
                    "variant": variant,
                    "max_iter": caps[variant],
                    "num_iter": int(result.num_iter[0]),
                    "num_m_steps": int(result.num_m_steps[0]),
                    "final_log_likelihood": float(result.log_likelihood),
                    "seconds_with_compile": seconds,
                }
            )
            _log(
                f"    {problem.name} {dtype} probe {variant:7s} max_iter={caps[variant]:>6d}: "
                f"{float(result.log_likelihood)!r} ({seconds:.1f} s)"
            )

        for variant in ("squarem", "plain"):
            probe(variant)
        # The long runs' ends; in float64 the lower one is continued until
        # they agree (then their parameters are compared).
        ends = dict(probes)
        polish_log: list[dict[str, Any]] = []

        def polish() -> None:
            while dtype == "float64" and len(polish_log) < task["max_doublings"]:
                values = {v: float(ends[v].log_likelihood) for v in VARIANTS}
                top = max(values.values())
                if abs(values["plain"] - values["squarem"]) <= POLISH_AGREEMENT * abs(top):
                    return
                lower = min(VARIANTS, key=values.__getitem__)
                stage(f"{dtype} polish {lower} max_iter={caps[lower]}")
                ends[lower] = _fit(model, x, ends[lower].params, lower, caps[lower])
                polish_log.append(
                    {
                        "variant": lower,
                        "max_iter": caps[lower],
                        "final_log_likelihood": float(ends[lower].log_likelihood),
                    }
                )
                _log(
                    f"    {problem.name} {dtype} polish {lower:7s} max_iter={caps[lower]:>6d}: "
                    f"{float(ends[lower].log_likelihood)!r}"
                )

        doublings = {v: 0 for v in VARIANTS}

        def settle() -> tuple[float, float]:
            """Double the probes that miss the target (ℓ* from every run)."""
            while True:
                star = max(float(r.log_likelihood) for r in (*probes.values(), *ends.values()))
                target = star - gap * abs(star)
                missing = [v for v in VARIANTS if first_reach(probes[v], target) is None]
                again = [v for v in missing if doublings[v] < task["max_doublings"]]
                if not again:
                    return star, target
                for variant in again:
                    caps[variant] *= 2
                    doublings[variant] += 1
                    probe(variant)
                    if float(probes[variant].log_likelihood) > float(ends[variant].log_likelihood):
                        ends[variant] = probes[variant]

        star, target = settle()
        polish()
        star, target = settle()  # (a polished run may have raised ℓ*)
        reach = {v: first_reach(probes[v], target) for v in VARIANTS}
        tail = _history(probes["squarem"])
        tail = tail[np.isfinite(tail)]
        half = tail[len(tail) // 2] if tail.size else np.nan
        finals = {v: float(ends[v].log_likelihood) for v in VARIANTS}
        reference = {
            "log_likelihood_star": star,
            "from": max(VARIANTS, key=finals.__getitem__),
            "target": target,
            "relative_gap": gap,
            "probe_final_log_likelihood": {v: float(probes[v].log_likelihood) for v in VARIANTS},
            "probe_relative_difference": abs(
                float(probes["plain"].log_likelihood) - float(probes["squarem"].log_likelihood)
            )
            / abs(star),
            "squarem_gain_over_second_half_relative": (star - float(half)) / abs(star)
            if np.isfinite(half)
            else None,
            "probes": probe_log,
            "polish": polish_log,
            "final_log_likelihood": finals,
            "final_relative_difference": abs(finals["plain"] - finals["squarem"]) / abs(star),
        }
        scale = max(abs(star), 1.0)
        reference["exact_zeros_in_final_params"] = {
            v: int(
                sum(int(np.sum(np.asarray(leaf) == 0)) for leaf in jax.tree.leaves(ends[v].params))
            )
            for v in VARIANTS
        }
        monotone = {
            v: {
                "largest_relative_decrease": largest_decrease(probes[v], scale),
                "decreased_flag": bool(probes[v].decreased[0]),
                "nonfinite_flag": bool(probes[v].nonfinite[0]),
            }
            for v in VARIANTS
        }
        same = {
            "probes": compare(
                problem.canonical(ends["plain"].params),
                problem.canonical(ends["squarem"].params),
            )
        }
        row: dict[str, Any] = {
            "problem": problem.name,
            "what": problem.what,
            "dtype": dtype,
            "reference": reference,
            "monotone": monotone,
            "reached": {v: reach[v] is not None for v in VARIANTS},
        }
        if any(reach[v] is None for v in VARIANTS):
            row["same_optimum"] = same
            row["skipped"] = "a variant did not reach the target within its probe: " + ", ".join(
                f"{v} (max_iter {caps[v]})" for v in VARIANTS if reach[v] is None
            )
            return row

        # ---- timed fits to the target
        calls: dict[str, list[float]] = {v: [] for v in VARIANTS}
        first: dict[str, float] = {}
        results: dict[str, Any] = {}
        first_monitors = {v: CompileMonitor() for v in VARIANTS}
        steady_monitors = {v: CompileMonitor() for v in VARIANTS}

        def timed(variant: str, monitor: CompileMonitor) -> float:
            with monitor:
                begin = time.perf_counter()
                result = _fit(model, x, init, variant, reach[variant])
                seconds = time.perf_counter() - begin
            if int(result.num_iter[0]) != reach[variant]:
                raise RuntimeError(
                    f"{variant} ran {int(result.num_iter[0])} iterations, expected {reach[variant]}"
                )
            results[variant] = result
            return seconds

        for variant in VARIANTS:
            stage(f"{dtype} first timed call {variant} max_iter={reach[variant]}")
            first[variant] = timed(variant, first_monitors[variant])
        for round_index in range(task["repeats"]):
            order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                stage(f"{dtype} round {round_index} {variant}")
                calls[variant].append(timed(variant, steady_monitors[variant]))
        variants = {}
        for variant in VARIANTS:
            result = results[variant]
            m_steps = int(result.num_m_steps[0])
            iterations = int(result.num_iter[0])
            final = float(result.log_likelihood)
            seconds = np.asarray(calls[variant])
            entry = {
                "max_iter": reach[variant],
                "num_iter": iterations,
                "m_steps": m_steps,
                "e_steps": e_steps(variant, m_steps, iterations),
                "final_log_likelihood": final,
                "relative_gap_to_star": (star - final) / abs(star),
                "reached_target": final >= target,
                "s": float(np.median(seconds)),
                "min_s": float(seconds.min()),
                "max_s": float(seconds.max()),
                "calls_s": seconds.tolist(),
                "first_call_s": first[variant],
                "compile_s": first[variant] - float(np.median(seconds)),
                "xla_compile_s": first_monitors[variant].compile_seconds,
                "compilations": first_monitors[variant].compilations,
                "recompiles": steady_monitors[variant].compilations,
                "ms_per_m_step": 1e3 * float(np.median(seconds)) / max(m_steps, 1),
                "decreased_flag": bool(result.decreased[0]),
            }
            if variant == "squarem":
                entry["extrapolating_iterations"] = m_steps - 2 * iterations
            if dtype == "float32" and reference64 is not None:
                score = _float64_score(model, data, result.params)
                entry["float64_log_likelihood"] = score
                entry["float64_relative_gap_to_float64_star"] = (reference64 - score) / abs(
                    reference64
                )
            variants[variant] = entry
        same["at_target"] = compare(
            problem.canonical(results["plain"].params),
            problem.canonical(results["squarem"].params),
        )
        plain, fast = variants["plain"], variants["squarem"]
        row |= {
            "variants": variants,
            "ratios": {
                "m_steps": plain["m_steps"] / fast["m_steps"],
                "e_steps": plain["e_steps"] / fast["e_steps"],
                "wall": plain["s"] / fast["s"],
                "wall_min": plain["min_s"] / fast["min_s"],
            },
            "same_optimum": same,
            "repeats": task["repeats"],
        }
        return row


def problem_case(task: dict[str, Any], stage: Callable[[str], None]) -> dict[str, Any]:
    """(worker) every dtype of one problem."""
    problem = PROBLEMS[task["problem"]]
    model, data, sizes = problem.make(task["quick"])
    with jax.enable_x64(True):
        init64 = model.init(jax.random.key(1), jnp.asarray(data))
        init64 = jax.tree.map(lambda leaf: np.asarray(leaf, np.float64), init64)
    rows, reference64 = [], None
    for dtype in task["dtypes"]:
        if dtype not in problem.dtypes:
            continue
        _log(f"  {problem.name} {dtype}: {sizes}")
        row = run_case(problem, model, data, init64, dtype, task, stage, reference64)
        row["sizes"] = sizes
        if dtype == "float64":
            reference64 = row["reference"]["log_likelihood_star"]
        rows.append(row)
    return {"rows": rows}


# ===================================================== watched workers
# (as continuous.py: jaxlib 0.10.2's batched CPU LAPACK kernels can deadlock
# XLA's thread pool on 2 threads; a stalled worker reruns on one CPU)


def run_worker(
    task: dict[str, Any],
    workdir: Path,
    *,
    cpus: int | None = None,
    stall_s: float = 15.0,
    timeout_s: float = 3600.0,
) -> dict[str, Any]:
    from continuous import _native_stack_summary, _process_cpu_seconds

    name = f"{task['problem']}-{cpus or 'all'}"
    task_path, out_path = workdir / f"{name}.task.json", workdir / f"{name}.out.json"
    progress, log = workdir / f"{name}.progress", workdir / f"{name}.log"
    for path in (out_path, progress):
        path.unlink(missing_ok=True)
    if cpus is not None:
        task = task | {"cpus": sorted(os.sched_getaffinity(0))[:cpus]}
    task_path.write_text(json.dumps(task | {"progress": str(progress)}))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
    command += [str(task_path), str(out_path)]
    begin = time.monotonic()
    load_before = list(os.getloadavg())
    with open(log, "w") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
        last_cpu, last_change, outcome, native = 0.0, begin, None, None
        while proc.poll() is None:
            time.sleep(1.0)
            now = time.monotonic()
            used = _process_cpu_seconds(proc.pid)
            if used is not None and used - last_cpu > 0.05:
                last_cpu, last_change = used, now
            elif now - last_change > stall_s:
                outcome = "stalled"
            if outcome is None and now - begin > timeout_s:
                outcome = "timeout"
            if outcome:
                if outcome == "stalled":
                    native = _native_stack_summary(proc.pid)
                proc.kill()
                proc.wait()
                break
    wall = time.monotonic() - begin
    stage = progress.read_text().strip().splitlines()[-1:] if progress.exists() else []
    common = {
        "cpus": cpus,
        "worker_wall_s": wall,
        "stage": stage[0] if stage else None,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
    }
    if log.exists():
        for line in log.read_text().splitlines():
            if line.startswith("    "):
                _log(line)
    if outcome is None and proc.returncode == 0 and out_path.exists():
        return json.loads(out_path.read_text()) | common | {"outcome": "ok"}
    tail = log.read_text().strip().splitlines()[-12:] if log.exists() else []
    report = common | {"outcome": outcome or "failed", "returncode": proc.returncode}
    if outcome == "stalled":
        report["native_stack"] = native
    report["log_tail"] = tail
    return report


def run_with_fallback(task: dict[str, Any], workdir: Path, **options: Any) -> dict[str, Any]:
    attempts = []
    for cpus in (None, 1):
        report = run_worker(task, workdir, cpus=cpus, **options)
        if report["outcome"] == "ok":
            return report | {"attempts": attempts}
        _log(f"    {task['problem']}: {report['outcome']} at '{report['stage']}'")
        attempts.append(report)
        if report["outcome"] != "stalled":
            break
    return {"outcome": attempts[-1]["outcome"], "attempts": attempts, "rows": []}


class _Progress:
    def __init__(self, path: str | None) -> None:
        self.path = path

    def __call__(self, text: str) -> None:
        if self.path:
            with open(self.path, "a") as file:
                file.write(text + "\n")


def worker_main(task_path: str, out_path: str) -> int:
    task = json.loads(Path(task_path).read_text())
    if task.get("cpus"):
        os.sched_setaffinity(0, task["cpus"])  # before JAX starts its CPU client
    report = problem_case(task, _Progress(task.get("progress")))
    report["worker_cpus"] = len(os.sched_getaffinity(0))
    Path(out_path).write_text(json.dumps(_jsonable(report), allow_nan=False))
    return 0


def _jsonable(value: Any) -> Any:
    from _json import jsonable

    return jsonable(value)


# ================================================================ printing


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def _size_text(sizes: dict[str, Any]) -> str:
    keys = [k for k in ("B", "T", "n", "D", "K", "q", "S") if k in sizes]
    return " × ".join(f"{k}={sizes[k]}" for k in keys)


def format_rows(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'problem':<16} {'dtype':<7} {'size':<24} {'M-steps pl/SQ':>15} {'ratio':>6} "
        f"{'E-steps pl/SQ':>15} {'ratio':>6} {'wall s plain':>20} {'wall s SQUAREM':>20} "
        f"{'ratio':>6} {'max|Δθ|':>8} {'SQ decr.':>8}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        size = _size_text(row.get("sizes", {}))
        if "variants" not in row:
            lines.append(f"{row['problem']:<16} {row['dtype']:<7} {size:<24} {row.get('skipped')}")
            continue
        plain, fast = row["variants"]["plain"], row["variants"]["squarem"]
        wall = lambda v: f"{v['s']:.3f} [{v['min_s']:.3f}-{v['max_s']:.3f}]"
        lines.append(
            f"{row['problem']:<16} {row['dtype']:<7} {size:<24} "
            f"{plain['m_steps']:>7d}/{fast['m_steps']:<7d} {row['ratios']['m_steps']:>6.1f} "
            f"{plain['e_steps']:>7d}/{fast['e_steps']:<7d} {row['ratios']['e_steps']:>6.1f} "
            f"{wall(plain):>20} {wall(fast):>20} {row['ratios']['wall']:>6.1f} "
            f"{row['same_optimum']['probes']['max_abs_difference']:>8.1e} "
            f"{row['monotone']['squarem']['largest_relative_decrease']:>8.1e}"
        )
    lines.append(
        "M-steps / E-steps to reach ℓ* − gap·|ℓ*| (gap 1e-8 float64, 1e-6 float32); wall: median "
        "[min-max] seconds of the fit to the target, compile excluded; ratio = plain ÷ SQUAREM; "
        "max|Δθ|: largest parameter difference between the long runs (identified coordinates); "
        "SQ decr.: SQUAREM's largest relative decrease of the objective (0 = monotone)."
    )
    return "\n".join(lines)


# ==================================================================== main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--only",
        help=f"comma-separated problems: {', '.join(PROBLEMS)} (default: all; quick: "
        f"{', '.join(QUICK_PROBLEMS)})",
    )
    parser.add_argument("--dtype", action="append", choices=DTYPES, help="dtype (repeatable)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 3; quick 1)")
    parser.add_argument(
        "--max-doublings",
        type=int,
        default=3,
        help="times a probe that misses the target is rerun with twice the iterations (3)",
    )
    parser.add_argument(
        "--stall-s", type=float, default=15.0, help="a worker idle this long is deadlocked (15)"
    )
    parser.add_argument("--out", type=Path, help="JSON output path")
    args = parser.parse_args(argv)
    default = QUICK_PROBLEMS if args.quick else tuple(PROBLEMS)
    args.only = [p for p in (args.only or ",".join(default)).split(",") if p]
    unknown = sorted(set(args.only) - set(PROBLEMS))
    if unknown:
        parser.error(f"unknown problem(s) {unknown}; choose from {list(PROBLEMS)}")
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    args.dtype = args.dtype or list(DTYPES)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--worker"]:
        return worker_main(*argv[1:3])
    args = parse_args(argv)
    from gmm import backend_info, machine_info, versions
    from hmm import cpu_snapshot, other_cpu_cores

    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()
    load = machine["load_average"]
    report: dict[str, Any] = {
        "benchmark": "accelerate",
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "command": " ".join(["python", "bench/accelerate.py", *argv]),
        "machine": machine,
        "load_average": load,
        "backend": backend_info(),
        "versions": versions(),
        "problems": args.only,
        "relative_gaps": GAPS,
        "repeats": args.repeats,
    }
    if load and load[0] > 1.5:
        report["load_note"] = (
            f"1-minute load average {load[0]:.2f} at the start on {machine['cpu_count']} CPUs: "
            "other work was running; timings are inflated"
        )
    _log(
        f"jax {jax.__version__} on {jax.default_backend()}; {machine['cpu_count']} CPUs "
        f"({machine['cpu_model']}); load {load}"
    )
    rows, workers, others = [], {}, {}
    first_snapshot = snapshot = cpu_snapshot()
    with tempfile.TemporaryDirectory(prefix="jaxem-accelerate-") as tmp:
        for name in args.only:
            _log(f"{name}: {PROBLEMS[name].what}")
            task = {
                "problem": name,
                "quick": args.quick,
                "dtypes": args.dtype,
                "repeats": args.repeats,
                "max_doublings": args.max_doublings,
            }
            outcome = run_with_fallback(task, Path(tmp), stall_s=args.stall_s)
            for row in outcome.pop("rows"):
                rows.append(row | {"cpus": outcome.get("cpus")})
            workers[name] = outcome
            others[name] = other_cpu_cores(snapshot, snapshot := cpu_snapshot())
    others["whole_run"] = other_cpu_cores(first_snapshot, snapshot)
    report["results"] = rows
    report["workers"] = workers
    report["other_processes_cpu_cores"] = others
    busy = others["whole_run"]
    if busy is not None and busy > 0.25:
        report["load_note_during_run"] = (
            f"other processes used {busy:.2f} cores on average during the run "
            f"({machine['cpu_count']} CPUs): timings are inflated"
        )
    finished = datetime.datetime.now(datetime.timezone.utc)
    report["finished"] = finished.isoformat(timespec="seconds")
    report["wall_s"] = (finished - started).total_seconds()
    report["load_average_at_end"] = list(os.getloadavg())
    print(format_rows(rows))
    if busy is not None:
        print(
            f"Other processes kept {busy:.2f} of {machine['cpu_count']} cores busy on average; "
            f"load average at start {load}, at end {report['load_average_at_end']}."
        )
    host = socket.gethostname().split(".")[0] or "host"
    date = datetime.date.today().isoformat()
    suffix = "-quick" if args.quick else ""
    out = args.out or RESULTS_DIR / f"accelerate-{host}-{jax.default_backend()}-{date}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_jsonable(report), indent=1, allow_nan=False) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
