"""Benchmark Gaussian-mixture EM per iteration: jaxem against its peers.

jaxem (``jaxem.fit``), gmmx (JAX), torchgmm (PyTorch Lightning),
pomegranate >= 1.0 (PyTorch) and scikit-learn (numpy, on the host, for
reference) fit the same float32 data from the same starting parameters for the
same number of EM iterations with convergence checks disabled. Each library
runs on the best device it can use: JAX's default backend for jaxem and gmmx,
CUDA for the PyTorch libraries when ``torch.cuda.is_available()`` (else the
CPU), the host CPU for scikit-learn. A library that is not installed is
reported as skipped and the others go on.

What is reported, per configuration (full and diagonal covariances):

* milliseconds per EM iteration: per round of the interleaved timing, the
  slope ``(t(M2) − t(M1)) / (M2 − M1)`` between a call with ``M1`` and a call
  with ``M2`` iterations (initialisation, input checks, data movement and final
  E-steps cancel out); the median over the rounds, with min, max and the
  quartiles; also the slope of the best calls (as ``bench/gmm.py`` reports);
* each library's time relative to jaxem (median ÷ jaxem's median; above 1
  means jaxem is faster);
* the log-likelihood per sample of each library's final parameters after
  ``M2`` iterations, all evaluated by one float64 numpy function, and its
  difference from jaxem's: a check that every library ran the same algorithm
  from the same start;
* the matmul-precision policy: ``jax_default_matmul_precision`` and torch's
  TF32 settings; on a GPU jaxem runs twice, at JAX's default precision (XLA
  may use TF32 for float32 products) and under
  ``jax.default_matmul_precision("highest")``, and the log-likelihood
  difference is the accuracy cost of TF32 (on a CPU TF32 does not apply).

And a ``restarts`` measurement for jaxem alone: one fit of 64 restarts
(vmapped, ``restart_batch_size=64``, and the automatic choice) against one
restart of the same problem, same iterations; target on a GPU: 64 restarts
cost at most 2× one restart.

Starting parameters come from ``bench/gmm.py``'s ``start_values`` (``K``
random rows as seeds, the nearest-seed assignment's weights, means and
covariances). jaxem, gmmx, pomegranate and scikit-learn take all three;
torchgmm takes only initial means, so it is given the seeds and recomputes the
same weights, means and covariances itself, from the same nearest-seed
assignment, in its initialisation pass.

Run from the repository root::

    PYTHONPATH=. python bench/peers.py            # GPU sizes: 1e6 × 32 × 64
    PYTHONPATH=. python bench/peers.py --quick    # small sizes, a CPU smoke run
    PYTHONPATH=. python bench/peers.py --n 100000 --dim 16 --components 16

Results go to ``bench/results/peers-<host>-<backend>-<date>[-suffix].json``
(or ``--out``); see ``bench/README.md`` for the fields.
"""

from __future__ import annotations

import os

# JAX and PyTorch share the GPU: JAX must not take 75% of its memory up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse
import contextlib
import dataclasses
import datetime
import functools
import importlib
import importlib.metadata
import json
import logging
import math
import socket
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

import jaxem

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _json import jsonable

from gmm import (
    REG_COVAR,
    Runner,
    Slope,
    StartValues,
    backend_info,
    check_jaxem,
    check_sklearn,
    choose_blas_threads,
    default_blas_threads,
    jaxem_params,
    jaxem_runner,
    limit_blas_threads,
    machine_info,
    make_data,
    measure_slopes,
    sklearn_runner,
    start_values,
    versions,
    x64,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DTYPE = "float32"
NUM_RESTARTS = 64
RESTART_TARGET = 2.0
START_SEED = 1
# Distribution names, for versions and for the message when one is missing.
PEER_PACKAGES = {
    "gmmx": "gmmx",
    "torchgmm": "torchgmm",
    "pomegranate": "pomegranate",
    "scikit-learn": "scikit-learn",
}


# ------------------------------------------------------------ configurations


@dataclasses.dataclass(frozen=True)
class Config:
    """One benchmark configuration.

    Attributes:
      name: what ``--only`` selects.
      kind: ``"compare"`` (every library) or ``"restarts"`` (jaxem alone,
        ``NUM_RESTARTS`` restarts against one).
      n, dim, num_components: ``n × D × K``.
      covariance_type: ``"full"`` or ``"diag"``.
      iterations: ``(M1, M2)``, the two iteration counts of the slope.
    """

    name: str
    kind: str
    n: int
    dim: int
    num_components: int
    covariance_type: str
    iterations: tuple[int, int]

    @property
    def size(self) -> str:
        return f"{self.n}×{self.dim}×{self.num_components}"


def configs(
    quick: bool,
    n: int | None = None,
    dim: int | None = None,
    components: int | None = None,
    iterations: tuple[int, int] | None = None,
) -> list[Config]:
    """Full, diag and restarts; ``n``, ``dim``, ``components`` and
    ``iterations`` override the full and diag sizes."""
    if quick:
        base_n, base_dim, base_k, base_iterations = 10_000, 8, 8, (2, 22)
    else:
        base_n, base_dim, base_k, base_iterations = 1_000_000, 32, 64, (2, 10)
    size = (n or base_n, dim or base_dim, components or base_k)
    its = iterations or base_iterations
    return [
        Config("full", "compare", *size, "full", its),
        Config("diag", "compare", *size, "diag", its),
        Config("restarts", "restarts", 10_000, 8, 8, "full", (5, 25)),
    ]


# ----------------------------------------------------------- devices, policy


def torch_module() -> Any | None:
    """``torch``, or ``None`` when it is not installed."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


def torch_device() -> str | None:
    """``"cuda"`` when PyTorch sees a GPU, else ``"cpu"`` (``None``: no torch)."""
    torch = torch_module()
    if torch is None:
        return None
    return "cuda" if torch.cuda.is_available() else "cpu"


def jax_device() -> str:
    backend, kind = jax.default_backend(), jax.devices()[0].device_kind
    return backend if kind.lower() == backend else f"{backend} ({kind})"


def precision_policy() -> dict[str, Any]:
    """The matmul-precision settings every library ran under."""
    backend = jax.default_backend()
    policy: dict[str, Any] = {
        "jax_default_matmul_precision": jax.config.jax_default_matmul_precision,
        "jax_backend": backend,
        "tf32_applies": backend == "gpu",
        "jaxem_highest_run": backend == "gpu",
    }
    torch = torch_module()
    if torch is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            policy["torch_cuda_matmul_allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
            policy["torch_float32_matmul_precision"] = torch.get_float32_matmul_precision()
            policy["torch_cuda_matmul_fp32_precision"] = getattr(
                torch.backends.cuda.matmul, "fp32_precision", None
            )
        policy["torch_device"] = torch_device()
        policy["torch_num_threads"] = torch.get_num_threads()
    if backend == "gpu":
        policy["statement"] = (
            "jaxem and gmmx run at JAX's default matmul precision, with which XLA may use "
            "TF32 for float32 products on this GPU; jaxem also runs under "
            "jax.default_matmul_precision('highest') (full float32), and the log-likelihood "
            "difference between the two is the accuracy cost of TF32. torchgmm and "
            "pomegranate follow torch's settings recorded here (allow_tf32=False and "
            "float32_matmul_precision='highest' mean full float32 products)."
        )
    else:
        policy["statement"] = (
            f"JAX backend is {backend}: TF32 does not apply; every library computes float32 "
            "products in float32 on the CPU, and jaxem is run once."
        )
    return policy


def library_versions() -> dict[str, Any]:
    """:func:`gmm.versions` plus torch, lightning and the peers."""
    found = versions()
    for package in ("torch", "pytorch-lightning", "gmmx", "torchgmm", "pomegranate"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


# ------------------------------------------------------- data, start, check


def start_seeds(x: np.ndarray, num_components: int, seed: int) -> np.ndarray:
    """``(K, D)``: the observations :func:`gmm.start_values` uses as seeds
    (its first draw from ``default_rng(seed)``), for torchgmm's
    ``init_means``."""
    rng = np.random.default_rng(seed)
    return x[rng.choice(x.shape[0], num_components, replace=False)]


def check_seeds(x: np.ndarray, seeds: np.ndarray, start: StartValues) -> None:
    """Raise unless ``start``'s means are the nearest-seed means of ``seeds``
    (so torchgmm, given the seeds, starts where the others start)."""
    distances = -2.0 * (x @ seeds.T) + np.sum(seeds * seeds, axis=1)
    labels = np.argmin(distances, axis=1)
    counts = np.maximum(np.bincount(labels, minlength=seeds.shape[0]), 1)
    means = np.zeros_like(seeds)
    np.add.at(means, labels, x)
    means /= counts[:, None]
    if not np.allclose(means, start.means, rtol=1e-10, atol=1e-10):
        raise RuntimeError("start_seeds no longer matches gmm.start_values' seeding")


@dataclasses.dataclass(frozen=True)
class FinalParams:
    """A library's parameters after the fit, in float64: ``weights (K,)``,
    ``means (K, D)``, ``covariances`` (``(K, D, D)`` full, ``(K, D)`` diag)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray


def _float64(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def final_params(weights: Any, means: Any, covariances: Any) -> FinalParams:
    return FinalParams(_float64(weights), _float64(means), _float64(covariances))


def log_likelihood_per_sample(
    x: np.ndarray, params: FinalParams, covariance_type: str, block_size: int = 65_536
) -> float:
    """Mean log-likelihood of ``x (n, D)`` under ``params``, in float64.

    One function for every library's final parameters, so that differences
    are the parameters' and not the evaluators'. NaN when a covariance is not
    positive definite.
    """
    weights, means, covariances = params.weights, params.means, params.covariances
    num_components, dim = means.shape
    log_weights = np.log(weights)
    if covariance_type == "full":
        try:
            cholesky = np.linalg.cholesky(covariances)
        except np.linalg.LinAlgError:
            return math.nan
        factors = np.linalg.inv(cholesky)  # L⁻¹: |L⁻¹ (x − μ)|² is the Mahalanobis distance
        log_dets = 2.0 * np.sum(np.log(np.diagonal(cholesky, axis1=-2, axis2=-1)), axis=-1)
    else:
        if np.any(covariances <= 0):
            return math.nan
        log_dets = np.sum(np.log(covariances), axis=-1)
    constant = log_weights - 0.5 * (dim * math.log(2.0 * math.pi) + log_dets)
    total = 0.0
    for start in range(0, x.shape[0], block_size):
        block = x[start : start + block_size].astype(np.float64)
        log_prob = np.empty((block.shape[0], num_components))
        for k in range(num_components):
            centred = block - means[k]
            if covariance_type == "full":
                mahalanobis = np.sum(np.square(centred @ factors[k].T), axis=1)
            else:
                mahalanobis = np.sum(np.square(centred) / covariances[k], axis=1)
            log_prob[:, k] = constant[k] - 0.5 * mahalanobis
        total += float(np.sum(logsumexp(log_prob, axis=1)))
    return total / x.shape[0]


# ------------------------------------------------------------------ peers


@dataclasses.dataclass(frozen=True)
class Problem:
    """One configuration's data and start, shared by every library."""

    config: Config
    x64: np.ndarray
    x32: np.ndarray
    start: StartValues
    seeds: np.ndarray


@dataclasses.dataclass(frozen=True)
class Peer:
    """One library's timed runner.

    Attributes:
      runner: for :func:`gmm.measure_slopes`.
      extract: ``extract(result)``: the :class:`FinalParams` of a call's result.
      device: where it computes.
      init_parameters: which starting parameters its API takes (the others
        it derives itself).
      init: how it was given the starting parameters.
      notes: API caveats worth reading beside the numbers.
      own_log_likelihood: ``own_log_likelihood(result)``: the library's own
        final log-likelihood per sample, where it reports one at the final
        parameters (else ``None``).
    """

    runner: Runner
    extract: Callable[[Any], FinalParams]
    device: str
    init_parameters: tuple[str, ...]
    init: str
    notes: list[str]
    own_log_likelihood: Callable[[Any], float] | None = None


def _jax_float32() -> contextlib.AbstractContextManager:
    return x64(DTYPE)


@contextlib.contextmanager
def _jax_highest() -> Any:
    with x64(DTYPE), jax.default_matmul_precision("highest"):
        yield


def jaxem_peer(problem: Problem, *, highest: bool = False) -> Peer:
    config = problem.config
    model = jaxem.GaussianMixture(
        config.num_components, covariance_type=config.covariance_type, reg_covar=REG_COVAR
    )
    with x64(DTYPE):
        x = jnp.asarray(problem.x32)
        params = jaxem_params([problem.start], DTYPE)
    context = _jax_highest if highest else _jax_float32
    return Peer(
        runner=Runner(jaxem_runner(model, x, params), check_jaxem, context),
        extract=lambda result: final_params(
            result.params.weights, result.params.means, result.params.covariances
        ),
        device=jax_device(),
        init_parameters=("weights", "means", "covariances"),
        init="exact: init_params = (weights, means, covariances)",
        notes=["matmul precision 'highest'" if highest else "JAX default matmul precision"],
        own_log_likelihood=lambda result: float(result.log_likelihood),
    )


def gmmx_peer(problem: Problem) -> Peer:
    gmmx = importlib.import_module("gmmx")
    config = problem.config
    x = jnp.asarray(problem.x32)
    start = problem.start
    gmm = gmmx.GaussianMixtureModelJax.from_squeezed(
        means=jnp.asarray(start.means.astype(DTYPE)),
        covariances=jnp.asarray(start.covariances.astype(DTYPE)),
        weights=jnp.asarray(start.weights.astype(DTYPE)),
        covariance_type=config.covariance_type,
    )

    def run(m: int) -> Any:
        fitter = gmmx.EMFitter(max_iter=m, tol=0.0, reg_covar=REG_COVAR)
        return jax.block_until_ready(fitter.fit(x=x, gmm=gmm))

    def check(result: Any, m: int) -> None:
        if int(result.n_iter) != m:
            raise RuntimeError(f"gmmx ran {int(result.n_iter)} iterations, expected {m}")

    def extract(result: Any) -> FinalParams:
        fitted = result.gmm
        return final_params(
            fitted.weights_numpy, fitted.means_numpy, fitted.covariances.values_numpy
        )

    return Peer(
        runner=Runner(run, check, _jax_float32),
        extract=extract,
        device=jax_device(),
        init_parameters=("weights", "means", "covariances"),
        init="exact: GaussianMixtureModelJax.from_squeezed(means, covariances, weights)",
        notes=[
            "float32 only (checks every array's dtype)",
            "EMFitter(max_iter, tol, reg_covar) is static: one compilation per max_iter",
            "forms (n, K, D) temporaries in the E- and M-steps",
        ],
    )


def torchgmm_peer(problem: Problem) -> Peer:
    torch = importlib.import_module("torch")
    torchgmm_gmm = importlib.import_module("torchgmm.bayes")
    covariance = importlib.import_module("torchgmm.bayes.core").covariance
    config = problem.config
    device = torch_device()
    x = torch.from_numpy(problem.x32).to(device)
    seeds = torch.from_numpy(problem.seeds.astype(DTYPE))
    trainer_params = {
        "accelerator": "gpu" if device == "cuda" else "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "logger": False,
        "enable_checkpointing": False,
    }
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)

    def run(m: int) -> Any:
        estimator = torchgmm_gmm.GaussianMixture(
            config.num_components,
            covariance_type=config.covariance_type,
            init_means=seeds,
            convergence_tolerance=0.0,
            covariance_regularization=REG_COVAR,
            trainer_params=trainer_params | {"max_epochs": m},
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator.fit(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return estimator

    def check(estimator: Any, m: int) -> None:
        if estimator.num_iter_ != m:
            raise RuntimeError(f"torchgmm ran {estimator.num_iter_} iterations, expected {m}")

    def extract(estimator: Any) -> FinalParams:
        model = estimator.model_
        covariances = covariance(model.precisions_cholesky.double(), config.covariance_type)
        return final_params(model.component_probs, model.means, covariances)

    return Peer(
        runner=Runner(run, check, compiles=False),
        extract=extract,
        device=device,
        init_parameters=("means",),
        init=(
            "equivalent: init_means = the K seed rows; torchgmm's initialisation pass assigns "
            "each row to its nearest seed and computes the weights, means and covariances "
            "(+ reg) of that assignment, as gmm.start_values does (only means can be given)"
        ),
        notes=[
            "float32 unless trainer_params={'precision': 64}",
            "every fit builds two PyTorch Lightning trainers (initialisation, EM), one epoch "
            "per EM iteration",
            "full covariances: a Python loop over the K components in each M-step",
            "diag covariances: E[x²] − μ² (uncentred) in float32",
        ],
    )


def pomegranate_peer(problem: Problem) -> Peer:
    torch = importlib.import_module("torch")
    gmm_module = importlib.import_module("pomegranate.gmm")
    normal_module = importlib.import_module("pomegranate.distributions")
    config = problem.config
    device = torch_device()
    x = torch.from_numpy(problem.x32).to(device)
    start = problem.start
    weights = start.weights / start.weights.sum()
    means = torch.from_numpy(start.means.astype(DTYPE)).to(device)
    covariances = torch.from_numpy(start.covariances.astype(DTYPE)).to(device)
    priors = torch.from_numpy(weights.astype(DTYPE)).to(device)

    def build(m: int) -> Any:
        distributions = [
            normal_module.Normal(
                means=means[k].clone(),
                covs=covariances[k].clone(),
                covariance_type=config.covariance_type,
            )
            for k in range(config.num_components)
        ]
        # tol=-inf: pomegranate stops when the improvement is below tol, and a
        # float32 improvement can be slightly negative.
        return gmm_module.GeneralMixtureModel(
            distributions, priors=priors.clone(), max_iter=m, tol=-math.inf
        ).to(device)

    def run(m: int) -> Any:
        model = build(m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return model

    def check(model: Any, m: int) -> None:
        # No iteration count is exposed; with tol=-inf the loop runs max_iter.
        if model.max_iter != m:
            raise RuntimeError(f"pomegranate was built for {model.max_iter} iterations, not {m}")

    def extract(model: Any) -> FinalParams:
        return final_params(
            model.priors,
            torch.stack([d.means for d in model.distributions]),
            torch.stack([d.covs for d in model.distributions]),
        )

    return Peer(
        runner=Runner(run, check, compiles=False),
        extract=extract,
        device=device,
        init_parameters=("weights", "means", "covariances"),
        init="exact: Normal(means, covs) per component and priors = weights",
        notes=[
            "computes in the dtype of the parameters given (float32 here)",
            "no covariance regularisation (no reg_covar): covariances are E[xxᵀ] − μμᵀ",
            "tol=-inf to disable the stopping rule (improvement < tol stops it)",
            "a Python loop over the K components in the E- and M-steps",
            "does not report its iteration count",
        ],
    )


def sklearn_peer(problem: Problem, blas_threads: int) -> Peer:
    config = problem.config
    run = sklearn_runner(problem.x32, problem.start, config.covariance_type, DTYPE)
    return Peer(
        runner=Runner(
            run,
            check_sklearn,
            functools.partial(limit_blas_threads, blas_threads),
            compiles=False,
        ),
        extract=lambda model: final_params(model.weights_, model.means_, model.covariances_),
        device="host cpu",
        init_parameters=("weights", "means", "precisions"),
        init="exact: weights_init, means_init, precisions_init",
        notes=[
            "reference, numpy on the host CPU",
            f"{blas_threads} BLAS threads",
            "float32 input computes in float32",
        ],
    )


PEERS: dict[str, Callable[[Problem], Peer]] = {
    "gmmx": gmmx_peer,
    "torchgmm": torchgmm_peer,
    "pomegranate": pomegranate_peer,
}


def peer_missing(name: str) -> str | None:
    """Why ``name`` cannot run (not installed), or ``None``."""
    modules = {"gmmx": ["gmmx"], "torchgmm": ["torch", "torchgmm"]}
    for module in modules.get(name, ["torch", name]):
        try:
            importlib.import_module(module)
        except ImportError as error:
            return f"not installed ({error}); pip install {PEER_PACKAGES[name]}"
    return None


# ------------------------------------------------------------------ timing


def round_slopes(slope: Slope, iterations: tuple[int, int]) -> list[float]:
    """ms per iteration from each round's pair of calls (``M1``, then ``M2``)."""
    m1, m2 = iterations
    pairs = zip(slope.calls_s[m1], slope.calls_s[m2], strict=True)
    return [1e3 * (t2 - t1) / (m2 - m1) for t1, t2 in pairs]


def summarize_slope(slope: Slope, iterations: tuple[int, int]) -> dict[str, Any]:
    """Median, quartiles, min and max of the per-round slopes, and the
    best-call slope with its intercept and compile counts."""
    rounds = np.asarray(round_slopes(slope, iterations))
    q1, median, q3 = np.percentile(rounds, [25, 50, 75])
    return {
        "ms_per_iter": float(median),
        "ms_per_iter_min": float(rounds.min()),
        "ms_per_iter_max": float(rounds.max()),
        "ms_per_iter_q1": float(q1),
        "ms_per_iter_q3": float(q3),
        "ms_per_iter_rounds": rounds.tolist(),
        "ms_per_iter_best_calls": slope.ms_per_iter,
        "fixed_ms": slope.fixed_ms,
        "calls_s": {str(m): v for m, v in slope.calls_s.items()},
        "first_call_s": {str(m): v for m, v in slope.first_call_s.items()},
        "compile_s": slope.compile_s,
        "recompiles": slope.recompiles,
    }


def _capture(
    check: Callable[[Any, int], None],
    extract: Callable[[Any], FinalParams],
    own: Callable[[Any], float] | None,
    m2: int,
    store: dict[str, Any],
) -> Callable[[Any, int], None]:
    """``check``, which also keeps the final parameters of an ``M2`` call."""

    def wrapped(result: Any, m: int) -> None:
        check(result, m)
        if m == m2:
            store["params"] = extract(result)
            store["own"] = None if own is None else own(result)

    return wrapped


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_compare(
    config: Config, repeats: int, skip: Sequence[str], blas_threads: int | None
) -> dict[str, Any]:
    """Every available library on one configuration."""
    x64_data = make_data(config.n, config.dim, config.num_components, config.covariance_type)
    start = start_values(x64_data, config.num_components, config.covariance_type, seed=START_SEED)
    seeds = start_seeds(x64_data, config.num_components, seed=START_SEED)
    check_seeds(x64_data, seeds, start)
    problem = Problem(config, x64_data, x64_data.astype(DTYPE), start, seeds)

    peers: dict[str, Peer] = {"jaxem": jaxem_peer(problem)}
    if jax.default_backend() == "gpu":
        peers["jaxem (highest)"] = jaxem_peer(problem, highest=True)
    libraries: dict[str, dict[str, Any]] = {}
    extra: dict[str, dict[str, Any]] = {}
    for name, build in PEERS.items():
        reason = "skipped by --skip" if name in skip else peer_missing(name)
        if reason is None:
            try:
                peers[name] = build(problem)
            except Exception as error:  # a peer's API changed: report, go on
                reason = f"setup failed: {type(error).__name__}: {error}"
        if reason is not None:
            _log(f"  {name}: {reason}")
            libraries[name] = {"available": False, "skipped": reason}
    if "scikit-learn" in skip:
        libraries["scikit-learn"] = {"available": False, "skipped": "skipped by --skip"}
    else:
        if blas_threads == 0 or (blas_threads is None and jax.default_backend() != "cpu"):
            blas_threads = default_blas_threads()  # numpy's default; no probe on a GPU host
        if blas_threads is None:
            _log(f"  {config.name}: probing scikit-learn's BLAS threads")
        probe_run = sklearn_runner(problem.x32, start, config.covariance_type, DTYPE)
        threads, probe = choose_blas_threads(probe_run, config.iterations[0], blas_threads)
        peers["scikit-learn"] = sklearn_peer(problem, threads)
        extra["scikit-learn"] = {"blas_threads": threads, "blas_thread_probe_s": probe}

    captured: dict[str, dict[str, Any]] = {name: {} for name in peers}
    runners = {
        name: dataclasses.replace(
            peer.runner,
            check=_capture(
                peer.runner.check,
                peer.extract,
                peer.own_log_likelihood,
                config.iterations[1],
                captured[name],
            ),
        )
        for name, peer in peers.items()
    }
    _log(f"  {config.name} {config.size}: timing {', '.join(runners)}")
    slopes = measure_slopes(runners, config.iterations, repeats)

    _log(f"  {config.name}: evaluating final log-likelihoods in float64")
    skipped, libraries = libraries, {}
    for name, peer in peers.items():
        log_likelihood = log_likelihood_per_sample(
            x64_data, captured[name]["params"], config.covariance_type
        )
        libraries[name] = (
            {
                "available": True,
                "skipped": None,
                "version": _version(name),
                "device": peer.device,
                "dtype": DTYPE,
                "init_exact": peer.init.startswith("exact"),
                "init_parameters": list(peer.init_parameters),
                "init": peer.init,
                "notes": peer.notes,
                "log_likelihood": log_likelihood,
                "own_log_likelihood": captured[name]["own"],
            }
            | extra.get(name, {})
            | summarize_slope(slopes[name], config.iterations)
        )
    libraries |= skipped
    ours = libraries["jaxem"]
    for entry in libraries.values():
        if not entry.get("available"):
            continue
        entry["ratio_to_jaxem"] = entry["ms_per_iter"] / ours["ms_per_iter"]
        entry["log_likelihood_minus_jaxem"] = entry["log_likelihood"] - ours["log_likelihood"]
    row: dict[str, Any] = {
        "config": config.name,
        "kind": config.kind,
        "covariance_type": config.covariance_type,
        "n": config.n,
        "D": config.dim,
        "K": config.num_components,
        "dtype": DTYPE,
        "iterations": list(config.iterations),
        "repeats": repeats,
        "reg_covar": REG_COVAR,
        "libraries": libraries,
    }
    if "jaxem (highest)" in libraries:
        row["tf32_log_likelihood_cost"] = (
            libraries["jaxem (highest)"]["log_likelihood"] - ours["log_likelihood"]
        )
    torch = torch_module()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    return row


def _version(name: str) -> str | None:
    if name.startswith("jaxem"):
        return jaxem.__version__
    try:
        return importlib.metadata.version(PEER_PACKAGES[name])
    except importlib.metadata.PackageNotFoundError:
        return None


def _automatic_batch_size(model: jaxem.GaussianMixture, x: jax.Array) -> int | None:
    """What ``restart_batch_size=None`` picks (a private helper, read only to
    report it; ``None`` if it moved)."""
    try:
        from jaxem._engine import auto_restart_batch_size
    except ImportError:
        return None
    return int(auto_restart_batch_size(model, x, NUM_RESTARTS))


def run_restarts(config: Config, repeats: int) -> dict[str, Any]:
    """jaxem: ``NUM_RESTARTS`` restarts in one fit against one restart."""
    x64_data = make_data(config.n, config.dim, config.num_components, config.covariance_type)
    starts = [
        start_values(x64_data, config.num_components, config.covariance_type, seed=START_SEED + r)
        for r in range(NUM_RESTARTS)
    ]
    model = jaxem.GaussianMixture(
        config.num_components, covariance_type=config.covariance_type, reg_covar=REG_COVAR
    )
    with x64(DTYPE):
        x = jnp.asarray(x64_data.astype(DTYPE))
        one = jaxem_params(starts[:1], DTYPE)
        many = jaxem_params(starts, DTYPE)
        auto = _automatic_batch_size(model, x)
    runners = {
        "1 restart": Runner(jaxem_runner(model, x, one), check_jaxem, _jax_float32),
        f"{NUM_RESTARTS} restarts, vmapped": Runner(
            jaxem_runner(
                model, x, many, num_restarts=NUM_RESTARTS, restart_batch_size=NUM_RESTARTS
            ),
            check_jaxem,
            _jax_float32,
        ),
        f"{NUM_RESTARTS} restarts, automatic": Runner(
            jaxem_runner(model, x, many, num_restarts=NUM_RESTARTS),
            check_jaxem,
            _jax_float32,
        ),
    }
    _log(f"  {config.name} {config.size}: timing {', '.join(runners)}")
    slopes = measure_slopes(runners, config.iterations, repeats)
    variants = {name: summarize_slope(slope, config.iterations) for name, slope in slopes.items()}
    single = variants["1 restart"]["ms_per_iter"]
    for entry in variants.values():
        entry["ratio_to_one_restart"] = entry["ms_per_iter"] / single
    vmapped = variants[f"{NUM_RESTARTS} restarts, vmapped"]["ratio_to_one_restart"]
    return {
        "config": config.name,
        "kind": config.kind,
        "covariance_type": config.covariance_type,
        "n": config.n,
        "D": config.dim,
        "K": config.num_components,
        "dtype": DTYPE,
        "iterations": list(config.iterations),
        "repeats": repeats,
        "num_restarts": NUM_RESTARTS,
        "automatic_restart_batch_size": auto,
        "device": jax_device(),
        "variants": variants,
        "target_ratio": RESTART_TARGET,
        "target_applies": jax.default_backend() == "gpu",
        "passed": bool(vmapped <= RESTART_TARGET) if jax.default_backend() == "gpu" else None,
    }


# ----------------------------------------------------------------- printing


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None or not math.isfinite(value) else format(value, spec)


def format_compare(row: dict[str, Any]) -> str:
    title = (
        f"\n{row['covariance_type']} {row['n']}×{row['D']}×{row['K']} {row['dtype']}, "
        f"iterations {row['iterations'][0]}→{row['iterations'][1]}, {row['repeats']} rounds"
    )
    header = (
        f"  {'library':<16} {'device':<16} {'init':<6} {'ms/iter':>10} {'[min, max]':>21} "
        f"{'× jaxem':>8} {'loglik/sample':>14} {'Δ vs jaxem':>11}"
    )
    lines = [title, header, "  " + "-" * (len(header) - 2)]
    for name, entry in row["libraries"].items():
        if not entry.get("available"):
            lines.append(f"  {name:<16} skipped: {entry['skipped']}")
            continue
        spread = (
            f"[{_fmt(entry['ms_per_iter_min'], '.2f')}, {_fmt(entry['ms_per_iter_max'], '.2f')}]"
        )
        lines.append(
            f"  {name:<16} {entry['device'][:16]:<16} "
            f"{'exact' if entry['init_exact'] else 'equiv':<6} "
            f"{_fmt(entry['ms_per_iter'], '.3f'):>10} "
            f"{spread:>21} {_fmt(entry['ratio_to_jaxem'], '.2f'):>8} "
            f"{_fmt(entry['log_likelihood'], '.6f'):>14} "
            f"{_fmt(entry['log_likelihood_minus_jaxem'], '.1e'):>11}"
        )
    lines.append(
        "  init: exact = given the start's weights, means and covariances; equiv = given "
        "the seeds as means only, recomputes the same start itself"
    )
    if "tf32_log_likelihood_cost" in row:
        lines.append(
            f"  TF32 cost: loglik(default) − loglik(highest) = "
            f"{-row['tf32_log_likelihood_cost']:.2e}"
        )
    return "\n".join(lines)


def format_restarts(row: dict[str, Any]) -> str:
    lines = [
        f"\nrestarts: {row['covariance_type']} {row['n']}×{row['D']}×{row['K']} {row['dtype']} "
        f"on {row['device']}, iterations {row['iterations'][0]}→{row['iterations'][1]} "
        f"(automatic restart_batch_size: {row['automatic_restart_batch_size']})"
    ]
    for name, entry in row["variants"].items():
        lines.append(
            f"  {name:<26} {_fmt(entry['ms_per_iter'], '.3f'):>9} ms/iter "
            f"[{_fmt(entry['ms_per_iter_min'], '.3f')}, {_fmt(entry['ms_per_iter_max'], '.3f')}]"
            f"  {_fmt(entry['ratio_to_one_restart'], '.2f')}× one restart"
        )
    if row["target_applies"]:
        lines.append(
            f"  target: {NUM_RESTARTS} vmapped ≤ {row['target_ratio']:g}× one restart: "
            + ("PASS" if row["passed"] else "FAIL")
        )
    else:
        lines.append(f"  (target ≤ {row['target_ratio']:g}× applies on a GPU only)")
    return "\n".join(lines)


# --------------------------------------------------------------------- main


def default_output(quick: bool, selected: list[Config], overridden: bool) -> Path:
    host = socket.gethostname().split(".")[0] or "host"
    date = datetime.date.today().isoformat()
    suffix = "-quick" if quick else ""
    compare = [c for c in selected if c.kind == "compare"]
    if overridden and compare:
        suffix += f"-{compare[0].n}x{compare[0].dim}x{compare[0].num_components}"
    return RESULTS_DIR / f"peers-{host}-{jax.default_backend()}-{date}{suffix}.json"


def _iterations(text: str) -> tuple[int, int]:
    try:
        m1, m2 = (int(v) for v in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected M1,M2; got {text!r}") from error
    if not 1 <= m1 < m2:
        raise argparse.ArgumentTypeError(f"need 1 <= M1 < M2; got {text!r}")
    return m1, m2


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (10 000 × 8 × 8)")
    parser.add_argument("--n", type=int, help="observations for full and diag")
    parser.add_argument("--dim", type=int, help="features D for full and diag")
    parser.add_argument("--components", type=int, help="components K for full and diag")
    parser.add_argument(
        "--iterations", type=_iterations, help="M1,M2 for full and diag (default 2,10; 2,22 quick)"
    )
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="full, diag, restarts (comma-separated)"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="LIBRARY",
        help="leave out a peer: gmmx, torchgmm, pomegranate, scikit-learn (repeatable)",
    )
    parser.add_argument("--repeats", type=int, help="timed rounds (default 5; 3 with --quick)")
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="BLAS threads for scikit-learn (0: numpy's default); default: the faster of the "
        "default and 1 by probe on a CPU backend, numpy's default otherwise",
    )
    parser.add_argument("--out", type=Path, help="JSON output path")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    for value in (args.n, args.dim, args.components):
        if value is not None and value < 1:
            parser.error("--n, --dim and --components must be >= 1")
    args.only = [v for value in args.only or [] for v in value.split(",") if v]
    unknown = sorted(set(args.only) - {"full", "diag", "restarts"})
    if unknown:
        parser.error(f"unknown config(s) {unknown}")
    args.skip = [v for value in args.skip for v in value.split(",") if v]
    unknown = sorted(set(args.skip) - set(PEER_PACKAGES))
    if unknown:
        parser.error(f"unknown library(ies) {unknown}; choose from {sorted(PEER_PACKAGES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    repeats = args.repeats or (3 if args.quick else 5)
    selected = [
        c
        for c in configs(args.quick, args.n, args.dim, args.components, args.iterations)
        if not args.only or c.name in args.only
    ]
    overridden = any(v is not None for v in (args.n, args.dim, args.components))
    machine = machine_info()
    policy = precision_policy()
    report: dict[str, Any] = {
        "benchmark": "peers",
        "started": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine,
        "backend": backend_info(),
        "torch_device": torch_device(),
        "versions": library_versions(),
        "precision": policy,
        "dtype": DTYPE,
        "reg_covar": REG_COVAR,
        "repeats": repeats,
    }
    _log(
        f"jax {jax.__version__} on {jax_device()}; torch device {torch_device()}; "
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}); load {machine['load_average']}"
    )
    _log(policy["statement"])
    rows, texts = [], []
    for config in selected:
        _log(f"{config.name} ({config.covariance_type} {config.size})")
        if config.kind == "compare":
            row = run_compare(config, repeats, args.skip, args.blas_threads)
            texts.append(format_compare(row))
        else:
            row = run_restarts(config, repeats)
            texts.append(format_restarts(row))
        rows.append(row)
    report["results"] = rows
    report["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(policy["statement"])
    print("\n".join(texts))
    out = args.out or default_output(args.quick, selected, overridden)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(jsonable(report), indent=1, allow_nan=False) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
