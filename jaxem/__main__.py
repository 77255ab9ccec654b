"""Command line: ``python -m jaxem demo``.

The demo fits Gaussian mixtures to the Old Faithful eruptions shipped with
the package, with every restart in one compiled batch, prints each restart's
log-likelihood, picks the number of components by BIC, and reports timings
(the first call compiles; a second call with a new key does not).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

import jaxem


def _timed(fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    return out, time.perf_counter() - start


def demo(
    num_restarts: int = 16,
    max_components: int = 4,
    covariance_type: str = "full",
    seed: int = 0,
) -> jaxem.FitResult:
    """Run the demo and print its report; returns the chosen model's fit."""
    x, names = jaxem.load_faithful(return_names=True)
    print(f"jaxem {jaxem.__version__} on {jax.default_backend()} ({jax.devices()[0].device_kind})")
    print(f"Old Faithful: {x.shape[0]} eruptions x {x.shape[1]} features ({', '.join(names)})")
    print(
        f"Gaussian mixtures, covariance_type={covariance_type!r}, {num_restarts} restarts "
        "per fit, run as one compiled batch\n"
    )
    fits = {}
    print(f"{'K':>2} {'compile+run s':>14} {'rerun s':>8} {'best mean log-lik':>18} {'BIC':>10}")
    for k in range(1, max_components + 1):
        model = jaxem.GaussianMixture(num_components=k, covariance_type=covariance_type)

        def run(key, model=model):
            return jaxem.fit(model, x, key=key, num_restarts=num_restarts, max_iter=500, tol=1e-6)

        _, first = _timed(lambda run=run: run(jax.random.key(seed + 1)))
        result, again = _timed(lambda run=run: run(jax.random.key(seed)))
        score = float(jaxem.bic(model, result.params, x))
        fits[k] = (model, result, score, again)
        log_lik = float(result.log_likelihood)
        print(f"{k:>2} {first:>14.2f} {again:>8.3f} {log_lik:>18.5f} {score:>10.2f}")

    best_k = min(fits, key=lambda k: fits[k][2])
    model, result, score, seconds = fits[best_k]
    print(f"\nChosen by BIC: K = {best_k}. Its {num_restarts} restarts:")
    print(f"{'restart':>7} {'iterations':>10} {'converged':>9} {'mean log-lik':>13}")
    final = np.asarray(result.restart_log_likelihood)
    for r in range(num_restarts):
        mark = "  <- best" if r == int(result.best_restart) else ""
        print(
            f"{r:>7} {int(result.num_iter[r]):>10} {bool(result.converged[r])!s:>9} "
            f"{final[r]:>13.6f}{mark}"
        )
    spread = final.max() - final.min()
    print(f"spread of final log-likelihoods across restarts: {spread:.3g}")
    params = result.params
    print("\nChosen model:")
    for k in range(best_k):
        mean = ", ".join(
            f"{name}={value:.3f}" for name, value in zip(names, params.means[k], strict=True)
        )
        print(f"  component {k}: weight {float(params.weights[k]):.3f}, mean ({mean})")
        if covariance_type == "full":
            print(f"    covariance {np.round(np.asarray(params.covariances[k]), 3).tolist()}")
    per_restart = 1e3 * seconds / num_restarts
    print(
        f"\nTimings: a {num_restarts}-restart fit takes {seconds * 1e3:.1f} ms once compiled "
        f"({per_restart:.2f} ms per restart, {int(np.sum(result.num_iter))} EM iterations in all)."
    )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jaxem", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser("demo", help="fit Gaussian mixtures to Old Faithful")
    demo_parser.add_argument("--restarts", type=int, default=16)
    demo_parser.add_argument("--max-components", type=int, default=4)
    demo_parser.add_argument(
        "--covariance-type", default="full", choices=("full", "tied", "diag", "spherical")
    )
    demo_parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.restarts, args.max_components, args.covariance_type, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
