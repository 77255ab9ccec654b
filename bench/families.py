"""Time per EM iteration of every mixture family against a diagonal Gaussian
mixture of the same size.

Each family of the test suite's catalogue (``tests/families.py``: every
component family, mixtures of experts, mixtures of mixtures, the sequence and
continuous-latent models) is fitted on its own kind of data, repeated to
``n`` rows, from ``model.init`` for a fixed number of iterations (``tol=0``),
in float32. Time per iteration is the slope between two iteration counts
(best of ``--repeats`` calls at each), next to a diagonal Gaussian mixture
with the same number of rows, features and components, timed in the same
rounds. The ratio ``family / diag`` is what the performance issue asks to
keep under 2 (or explain).

Run from the repository root::

    python bench/families.py            # n = 1e5, a few minutes
    python bench/families.py --quick    # n = 1e4
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _json import jsonable

import gmm
import jax
import jax.numpy as jnp
import numpy as np

import jaxem
from tests.families import FAMILIES

ITERATIONS = (2, 12)


def tile(data: Any, n: int) -> Any:
    """The family's data repeated to ``n`` rows (every array of a tuple)."""
    if isinstance(data, tuple):
        return tuple(np.resize(a, (n, *np.shape(a)[1:])) for a in data)
    return np.resize(data, (n, *np.shape(data)[1:]))


def as_float32(data: Any) -> Any:
    cast = lambda a: jnp.asarray(a, jnp.float32) if np.issubdtype(a.dtype, np.floating) else a
    return tuple(cast(np.asarray(a)) for a in data) if isinstance(data, tuple) else cast(data)


def slope(model: Any, x: Any, repeats: int) -> float:
    """ms per iteration of ``jaxem.fit`` from ``model.init``."""
    key = jax.random.key(0)
    params = jax.jit(model.init)(key, x)

    def call(m: int) -> float:
        start = time.perf_counter()
        result = jaxem.fit(model, x, key=key, init_params=params, max_iter=m, tol=0.0)
        jax.block_until_ready(result)
        return time.perf_counter() - start

    m1, m2 = ITERATIONS
    call(m1), call(m2)
    best = {m: min(call(m) for _ in range(repeats)) for m in (m1, m2)}
    return 1e3 * (best[m2] - best[m1]) / (m2 - m1)


def shape(model: Any, x: Any) -> tuple[int, int]:
    """``(D, K)``: the features and components a diagonal mixture of the same
    size has (``K`` states, factors' components; inputs' columns for tuples)."""
    features = x[0] if isinstance(x, tuple) else x
    dim = int(np.prod(features.shape[1:])) if features.ndim > 1 else 1
    k = getattr(model, "num_components", None) or getattr(model, "num_states", None) or 1
    return dim, int(k)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    n = args.n or (10_000 if args.quick else 100_000)
    rows = []
    for name, family in FAMILIES.items():
        model = family.make()
        data = family.data(np.random.default_rng(0))
        if isinstance(data, np.ndarray) and data.ndim == 3:  # sequences: (N, T, D)
            x = as_float32(tile(data, max(1, n // data.shape[1])))
        else:
            x = as_float32(tile(data, n))
        dim, k = shape(model, x)
        try:
            ours = slope(model, x, args.repeats)
        except Exception as error:  # a family the driver cannot fit this way
            gmm._log(f"  {name}: not timed ({type(error).__name__}: {error})"[:200])
            rows.append({"family": name, "error": f"{type(error).__name__}: {error}"[:500]})
            continue
        flat = np.resize(np.asarray(jax.tree.leaves(x)[0], np.float32), (n, dim))
        diag = slope(
            jaxem.GaussianMixture(max(k, 1), covariance_type="diag"),
            jnp.asarray(flat + np.random.default_rng(1).normal(size=flat.shape), jnp.float32),
            args.repeats,
        )
        row = {"family": name, "n": n, "dim": dim, "components": k}
        row |= {"ms_per_iter": ours, "diag_ms_per_iter": diag, "ratio": ours / diag}
        rows.append(row)
        flag = "  > 2x" if ours > 2 * diag else ""
        gmm._log(
            f"  {name:22s} D={dim:<3d} K={k:<3d} {ours:8.3f} ms/it   diag {diag:7.3f}   "
            f"{ours / diag:5.2f}x{flag}"
        )
    host = gmm.default_output("compare", args.quick).name.split("-")[1]
    date = datetime.date.today().isoformat()
    suffix = "-quick" if args.quick else ""
    out = gmm.RESULTS_DIR / f"families-{host}-{jax.default_backend()}-{date}{suffix}.json"
    report = {
        "benchmark": "families",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": gmm.machine_info(),
        "versions": gmm.versions(),
        "dtype": "float32",
        "iterations": ITERATIONS,
        "repeats": args.repeats,
        "rows": rows,
    }
    out.write_text(json.dumps(jsonable(report), indent=1, allow_nan=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
