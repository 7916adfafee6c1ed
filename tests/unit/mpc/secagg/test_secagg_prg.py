"""Masks come from AES-CTR keyed by HKDF, look uniform, and no module of mpc.secagg touches `random`."""

import ast
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from mpc.secagg.prg import expand, keystream, permutation, random_seed, random_unit

SECAGG = Path(__file__).resolve().parents[4] / "mpc" / "secagg"
P_FLOOR = 1e-4  # a correct generator fails one of these checks with probability ~1e-4 each


def test_expand_is_deterministic_and_seed_separated():
    seed = random_seed()
    a = expand(seed, 1000)
    assert a.dtype == np.uint32 and a.shape == (1000,)
    assert np.array_equal(a, expand(seed, 1000))
    assert np.array_equal(expand(seed, 10), a[:10])  # one stream, prefix-stable
    assert not np.array_equal(a, expand(random_seed(), 1000))
    assert not np.array_equal(a, expand(seed, 1000, label=b"other purpose"))
    assert int(expand(seed, 1000, modulus_bits=5).max()) < 32


def test_short_seed_is_refused():
    with pytest.raises(ValueError):
        keystream(b"short", 16, label=b"x")


def test_permutation_is_a_permutation_and_seeded():
    seed = random_seed()
    order = permutation(seed, 257)
    assert sorted(order) == list(range(257))
    assert order == permutation(seed, 257)
    assert order != permutation(random_seed(), 257)


def test_random_unit_in_range():
    u = random_unit(10_000)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.02


@pytest.fixture
def masked_vectors(round_at_masking):
    """Masked inputs of clients whose true inputs are all zero: whatever is left is the mask."""
    names = ["a", "b", "c", "d"]
    length = 4096
    _, server, clients = round_at_masking(names, 3, length)
    zeros = np.zeros(length, dtype=np.uint32)
    return [clients[n].masked_input(server.forwarded_shares(n), zeros) for n in names]


def test_masked_inputs_pass_byte_and_high_bit_chi_square(masked_vectors):
    for message in masked_vectors:
        data = np.frombuffer(message.vector, dtype=np.uint8)
        assert chisquare(np.bincount(data, minlength=256)).pvalue > P_FLOOR
        high = message.array() >> np.uint32(28)
        assert chisquare(np.bincount(high, minlength=16)).pvalue > P_FLOOR


def test_raw_prg_words_pass_chi_square_on_low_and_high_bits():
    words = expand(random_seed(), 65_536)
    assert chisquare(np.bincount(words >> np.uint32(24), minlength=256)).pvalue > P_FLOOR
    assert chisquare(np.bincount(words & np.uint32(0xFF), minlength=256)).pvalue > P_FLOOR


FORBIDDEN_NAMES = {"MT19937", "RandomState", "default_rng", "PCG64", "SeedSequence"}


def insecure_randomness(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                a.name for a in node.names if a.name.split(".")[0] == "random" or a.name.startswith("numpy.random")
            ]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] == "random" or module.startswith("numpy.random"):
                found.append(module)
            if module == "numpy" and any(a.name == "random" for a in node.names):
                found.append("numpy.random")
        elif isinstance(node, ast.Attribute) and node.attr == "random":
            found.append("<x>.random")
        elif isinstance(node, ast.Name | ast.Attribute):
            name = node.id if isinstance(node, ast.Name) else node.attr
            if name in FORBIDDEN_NAMES:
                found.append(name)
    return found


def test_no_random_module_or_numpy_random_in_secagg():
    files = sorted(SECAGG.glob("*.py"))
    assert len(files) >= 10
    offences = {f.name: hits for f in files if (hits := insecure_randomness(f))}
    assert offences == {}


def test_the_checker_catches_offences(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import random\nimport numpy as np\nfrom numpy import random as r\nx = np.random.rand(3)\n")
    assert len(insecure_randomness(bad)) == 3
