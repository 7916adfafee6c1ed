"""Randomness in one place: no module of ours uses `random` or `numpy.random` for noise, masks or keys.

Only the synthetic-data generators (datagen, mock) may use NumPy's seeded generator, for synthetic values."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cryptosuite", "catalog", "policies", "sandbox", "mpc", "gateway", "veilbox")
SYNTHETIC_ONLY = {"catalog/datagen.py", "catalog/mock.py"}


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "random" or a.name.startswith("numpy.random")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "random" or node.module.startswith("numpy.random") or (
                    node.module == "numpy" and any(a.name == "random" for a in node.names)):
                found.append(node.module)
        elif isinstance(node, ast.Attribute) and node.attr == "random" and isinstance(node.value, ast.Name) \
                and node.value.id in ("np", "numpy"):
            found.append(f"{node.value.id}.random")
    return found


def test_no_insecure_randomness_outside_synthetic_data():
    bad = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            rel = f.relative_to(ROOT).as_posix()
            if rel in SYNTHETIC_ONLY:
                continue
            if hits := offences(f):
                bad[rel] = hits
    assert bad == {}
