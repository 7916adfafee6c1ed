"""All randomness of `mpc.he` comes from the OS CSPRNG through `mpc.he._rand`."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np

import mpc.he
from mpc.he import _rand

PACKAGE = Path(mpc.he.__file__).resolve().parent


def forbidden(module: str) -> bool:
    return module.split(".")[0] == "random" or module.startswith("numpy.random")


def offences(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if forbidden(node.module) or (node.module == "numpy" and any(a.name == "random" for a in node.names)):
                found.append(node.module)
        elif isinstance(node, ast.Attribute) and node.attr in ("random", "default_rng", "RandomState"):
            found.append(ast.unparse(node))
        elif isinstance(node, ast.Name) and node.id in ("default_rng", "RandomState"):
            found.append(node.id)
    return found


def test_no_random_or_numpy_random_anywhere_in_mpc_he():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 8
    bad = {f.name: hits for f in files if (hits := offences(ast.parse(f.read_text(), filename=str(f))))}
    assert bad == {}


def test_the_scanner_catches_the_usual_forms():
    sample = "import random\nimport numpy as np\nfrom numpy import random as r\nx = np.random.rand(3)\n" \
             "g = np.random.default_rng(1)\nfrom random import choice\n"
    assert len(offences(ast.parse(sample))) >= 5


def test_only_rand_touches_entropy_sources():
    for f in PACKAGE.rglob("*.py"):
        text = f.read_text()
        if f.name != "_rand.py":
            assert "urandom" not in text and "import secrets" not in text, f.name


def test_standard_normal_moments():
    z = _rand.standard_normal(200_001)
    assert z.shape == (200_001,)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(z**4) - 3) < 0.1


def test_unit_floats_range_and_uniformity():
    u = _rand.unit_floats(100_000)
    assert u.min() > 0 and u.max() <= 1
    counts = np.histogram(u, bins=10, range=(0, 1))[0]
    assert counts.min() > 9_500 and counts.max() < 10_500


def test_integer_helpers():
    bounds = np.array([1, 2, 3, 10**12], dtype=np.int64)
    draws = np.stack([_rand.integers_below(bounds) for _ in range(200)])
    assert np.all(draws >= 0) and np.all(draws < bounds)
    assert np.all(draws[:, 0] == 0) and set(draws[:, 1]) == {0, 1}
    limbs = _rand.signed_bits(500, 120)
    big = [sum(int(limbs[j, i]) << (16 * j) for j in range(limbs.shape[0])) - 2**120 for i in range(500)]
    assert all(-(2**120) <= v < 2**120 for v in big) and max(big) > 2**118 and min(big) < -(2**118)
    for prime in (17592186028033, 1152921504606748673):  # both residue paths (< 2^44 and up to 2^60)
        assert _rand.residues(limbs, 120, prime).tolist() == [v % prime for v in big]
    r = _rand.log_uniform_integers(20_000, 2, 2**20)
    assert r.min() >= 2 and r.max() <= 2**20
    assert abs(np.log2(r).mean() - (1 + math.log2(2**20 + 1)) / 2) < 0.15
