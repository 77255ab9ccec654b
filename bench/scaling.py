"""Time per EM iteration against the number of observations, with a plot.

jaxem and scikit-learn (and gmmx, a JAX Gaussian-mixture library, where it
is installed) fit the same Gaussian mixture (``D = K = 16``, float32, full
and diagonal covariances) from the same starting parameters for a fixed
number of iterations, at ``n`` from 3e3 to 3e5 (smaller samples leave some of the 16
starting clusters with too few points for a full covariance). Time per iteration is the
slope between two iteration counts (``bench/gmm.py``'s method: calls
interleaved across libraries, best of ``--repeats`` per count), so set-up,
input checks and compilation cancel out.

Run from the repository root::

    python bench/scaling.py            # about five minutes on 2 cores
    python bench/scaling.py --quick    # smoke run

Writes ``bench/results/scaling-<host>-<backend>-<date>.json`` and the plot
next to it (``.png``), which the top README shows.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _json import jsonable

import gmm

import jaxem

SIZES = (3_000, 10_000, 30_000, 100_000, 300_000)
QUICK_SIZES = (3_000, 10_000)
DIM = NUM_COMPONENTS = 16
DTYPE = "float32"


def iterations(n: int, covariance_type: str) -> tuple[int, int]:
    """Iteration counts of the slope: more for cheap problems, so the
    difference dominates timer noise."""
    work = n * (DIM if covariance_type == "full" else 1)
    if work <= 1e5:
        return (10, 60)
    if work <= 1e6:
        return (5, 25)
    return (2, 8)


def gmmx_runner(x: np.ndarray, start: gmm.StartValues, covariance_type: str) -> Any:
    """``run(M)`` for gmmx from ``start`` (its ``EMFitter`` with ``tol=0``
    runs exactly ``M`` iterations, jitted once per ``M``), or ``None`` when
    gmmx is not installed."""
    try:
        from gmmx import EMFitter, GaussianMixtureModelJax
    except ImportError:
        return None
    data = jnp.asarray(x)
    start_model = GaussianMixtureModelJax.from_squeezed(
        means=jnp.asarray(start.means, DTYPE),
        covariances=jnp.asarray(start.covariances, DTYPE),
        weights=jnp.asarray(start.weights, DTYPE),
        covariance_type=covariance_type,
    )

    @functools.cache
    def fitter(m: int) -> Any:
        em = EMFitter(tol=0.0, max_iter=m, reg_covar=gmm.REG_COVAR)
        return jax.jit(em.fit)

    def run(m: int) -> Any:
        return jax.block_until_ready(fitter(m)(data, start_model))

    return run


def check_gmmx(result: Any, m: int) -> None:
    if int(result.n_iter) != m:
        raise RuntimeError(f"gmmx ran {int(result.n_iter)} iterations, expected {m}")


def measure(n: int, covariance_type: str, repeats: int) -> dict[str, Any]:
    data = gmm.make_data(n, DIM, NUM_COMPONENTS, covariance_type)
    start = gmm.start_values(data, NUM_COMPONENTS, covariance_type, seed=1)
    model = jaxem.GaussianMixture(
        NUM_COMPONENTS, covariance_type=covariance_type, reg_covar=gmm.REG_COVAR
    )
    with gmm.x64(DTYPE):
        x = jnp.asarray(data.astype(DTYPE))
        params = gmm.jaxem_params([start], DTYPE)
    runners = {
        "jaxem": gmm.Runner(
            gmm.jaxem_runner(model, x, params), gmm.check_jaxem, functools.partial(gmm.x64, DTYPE)
        ),
        "scikit-learn": gmm.Runner(
            gmm.sklearn_runner(data.astype(DTYPE), start, covariance_type, DTYPE),
            gmm.check_sklearn,
            functools.partial(gmm.limit_blas_threads, 1),
            compiles=False,
        ),
    }
    run_gmmx = gmmx_runner(data.astype(DTYPE), start, covariance_type)
    if run_gmmx is not None:
        runners["gmmx"] = gmm.Runner(run_gmmx, check_gmmx, compiles=False)
    slopes = gmm.measure_slopes(runners, iterations(n, covariance_type), repeats)
    row = {"n": n, "covariance_type": covariance_type, "iterations": iterations(n, covariance_type)}
    for name, slope in slopes.items():
        row[name] = slope.ms_per_iter
    gmm._log(
        f"  {covariance_type} n={n}: "
        + ", ".join(f"{name} {slope.ms_per_iter:.3f} ms/it" for name, slope in slopes.items())
    )
    return row


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {"jaxem": "o-", "scikit-learn": "s--", "gmmx": "^:"}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, covariance_type in zip(axes, ("full", "diag"), strict=True):
        chosen = [r for r in rows if r["covariance_type"] == covariance_type]
        for name, style in styles.items():
            points = [(r["n"], r[name]) for r in chosen if r.get(name) is not None]
            if points:
                ns, ms = zip(*points, strict=True)
                ax.loglog(ns, ms, style, label=name)
        ax.set_title(f"{covariance_type} covariance, D = K = {DIM}, {DTYPE}")
        ax.set_xlabel("n (observations)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ms per EM iteration")
    axes[0].legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    machine = gmm.machine_info()
    sizes = QUICK_SIZES if args.quick else SIZES
    rows = []
    for covariance_type in ("full", "diag"):
        for n in sizes:
            rows.append(measure(n, covariance_type, args.repeats))
    host = gmm.default_output("compare", args.quick).name.split("-")[1]
    date = datetime.date.today().isoformat()
    suffix = "-quick" if args.quick else ""
    out = (
        args.out or gmm.RESULTS_DIR / f"scaling-{host}-{jax.default_backend()}-{date}{suffix}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "scaling",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "backend": gmm.backend_info(),
        "versions": gmm.versions(),
        "dim": DIM,
        "num_components": NUM_COMPONENTS,
        "dtype": DTYPE,
        "repeats": args.repeats,
        "rows": rows,
    }
    out.write_text(json.dumps(jsonable(report), indent=1, allow_nan=False) + "\n")
    versions = report["versions"]
    title = (
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), {jax.default_backend()}; "
        f"jax {versions.get('jax')}, scikit-learn {versions.get('scikit-learn')}"
        + (f", gmmx {versions['gmmx']}" if versions.get("gmmx") else "")
    )
    plot(rows, out.with_suffix(".png"), title)
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
