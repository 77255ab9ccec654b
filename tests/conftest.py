"""Shared fixtures: float64 scope, and small datasets with known structure."""

from __future__ import annotations

import os

# Eight CPU devices, so the sharded fits are tested on a real mesh (the flag
# must be set before JAX starts; every other test runs on the first device).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

# Compiling dominates the suite (hundreds of small programs, each run once on
# tiny data), so the tests ask XLA for cheaper compilation: the legacy CPU
# emitters instead of the MLIR fusion emitters, and no expensive optimisation
# passes. The programs compute the same mathematics (XLA's passes preserve
# semantics; fast-math stays off), in a third to a quarter of the compile
# time, measured on a 2-core x86 machine (a Gaussian-mixture fit program: 3.1
# s to 0.7 s). Set JAXEM_TEST_FULL_OPTIMIZATION=1 to test the default
# compilation instead. The notebooks and the demo, run in subprocesses,
# inherit these settings.
if os.environ.get("JAXEM_TEST_FULL_OPTIMIZATION") != "1":
    if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] += " --xla_cpu_use_fusion_emitters=false"
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax
import numpy as np
import pytest


@pytest.fixture
def x64():
    """Run the test with 64-bit JAX arrays (reference comparisons)."""
    with jax.enable_x64(True):
        yield


def make_blobs(
    seed: int = 0,
    n: int = 300,
    dim: int = 2,
    num_components: int = 3,
    separation: float = 4.0,
    dtype=np.float64,
) -> np.ndarray:
    """Samples from ``num_components`` anisotropic Gaussian blobs."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=separation, size=(num_components, dim))
    labels = rng.integers(num_components, size=n)
    labels[:num_components] = np.arange(num_components)  # every blob present
    mixing = rng.normal(size=(num_components, dim, dim)) / np.sqrt(dim) + np.eye(dim)
    noise = rng.normal(size=(n, dim))
    x = centres[labels] + np.einsum("nd,nde->ne", noise, mixing[labels])
    return x.astype(dtype)


@pytest.fixture
def blobs() -> np.ndarray:
    return make_blobs()


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    Every XLA CPU executable keeps its own memory mappings; the whole suite
    compiles several hundred programs, which exceeded Linux's default limit of
    65 530 mappings per process (``vm.max_map_count``) and made LLVM fail
    with "Cannot allocate memory" at 5 GB resident. Tests that count
    recompilations do so within one module, so clearing between modules
    changes nothing they observe.
    """
    yield
    jax.clear_caches()


# One persistent compilation cache for the whole run, shared by the xdist
# workers and by the notebooks' kernels: a program that several test files,
# docstring examples or notebooks compile alike (the same model, shapes and
# options) is compiled once. The controlling process makes a fresh directory
# (so a run starts cold, as CI does) and hands it to the workers;
# JAXEM_TEST_CACHE_DIR names a directory to keep between runs instead.
def pytest_configure(config):
    workerinput = getattr(config, "workerinput", None)
    config._jaxem_own_cache = None
    if workerinput is not None:
        directory = workerinput.get("jaxem_cache_dir")
    else:
        directory = os.environ.get("JAXEM_TEST_CACHE_DIR")
        if not directory:
            import tempfile

            directory = config._jaxem_own_cache = tempfile.mkdtemp(prefix="jaxem-test-cache-")
    config._jaxem_cache_dir = directory
    if directory:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = directory  # (for subprocesses)
        os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def pytest_configure_node(node):
    """(pytest-xdist) The run's compilation cache, for a worker."""
    node.workerinput["jaxem_cache_dir"] = node.config._jaxem_cache_dir


def pytest_unconfigure(config):
    """The process that made the run's compilation cache removes it."""
    if getattr(config, "_jaxem_own_cache", None):
        import shutil

        shutil.rmtree(config._jaxem_own_cache, ignore_errors=True)
