"""The public surface: every exported name imports, and docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import jaxem
import jaxem.estimators
import jaxem.inference
import jaxem.models
import jaxem.models.components

PUBLIC_MODULES = [
    jaxem,
    jaxem.gem,
    jaxem.inference,
    jaxem.models,
    jaxem.models.components,
    jaxem.estimators,
]


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_public_name_imports_and_is_documented(module):
    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        value = getattr(module, name)
        assert value.__doc__, f"{module.__name__}.{name} has no docstring"


def test_every_public_object_has_one_home():
    """No object is exported by two public modules (re-exported sklearn
    exceptions aside), and the top level holds no statistics types."""
    homes = {}
    for module in PUBLIC_MODULES:
        for name in module.__all__:
            value = getattr(module, name)
            if getattr(value, "__module__", "").startswith("sklearn"):
                continue
            assert id(value) not in homes, (
                f"{name} is exported by {homes[id(value)]} and {module.__name__}"
            )
            homes[id(value)] = module.__name__
    assert not [name for name in jaxem.__all__ if name.endswith("Stats")]


def test_design_contract_names():
    """The names DESIGN.md fixes."""
    for name in ("fit", "em_step", "FitResult", "GaussianMixture", "Model"):
        assert name in jaxem.__all__
    assert isinstance(jaxem.GaussianMixture(2), jaxem.Model)
    fields = jaxem.FitResult._fields
    for field in ("params", "log_likelihood", "history", "num_iter", "converged", "restarts"):
        assert field in fields


def all_modules():
    yield "jaxem"
    for info in pkgutil.walk_packages(jaxem.__path__, prefix="jaxem."):
        yield info.name


@pytest.mark.parametrize("name", sorted(all_modules()))
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name, globs={}):
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) failed in {name}"
