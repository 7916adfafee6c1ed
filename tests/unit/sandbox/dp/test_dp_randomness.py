"""The SQL engine's modules draw no randomness of their own: no `random`, no `numpy.random`."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[4] / "sandbox"
OURS = [ROOT / "__init__.py", *sorted((ROOT / "sql").rglob("*.py")), *sorted((ROOT / "dp").rglob("*.py")),
        *sorted((ROOT / "engine").rglob("*.py"))]


def offences(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "random" or a.name.startswith("numpy")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "random" or node.module.startswith("numpy"):
                found.append(node.module)
        elif isinstance(node, ast.Attribute) and node.attr == "random":
            found.append(ast.unparse(node))
    return found


def test_modules_are_found() -> None:
    assert len(OURS) >= 10 and all(p.is_file() for p in OURS)


def test_no_random_or_numpy_random() -> None:
    bad = {str(p.relative_to(ROOT.parent)): offences(p) for p in OURS}
    assert {k: v for k, v in bad.items() if v} == {}


def test_noise_comes_only_from_opendp() -> None:
    """OpenDP's samplers are constructed in `sandbox.dp.samplers` and nowhere else in any package of ours."""
    packages = [ROOT.parent / pkg for pkg in ("catalog", "policies", "sandbox", "mpc", "gateway", "veilbox")]
    makers = {"make_laplace", "make_geometric", "make_gaussian"}

    def builds_a_sampler(path: Path) -> bool:  # code naming a constructor, not prose (a model card's text)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            name = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name)
                    else node.name if isinstance(node, ast.alias) else None)
            if name in makers:
                return True
        return False

    users = [str(p.relative_to(ROOT.parent)) for pkg in packages for p in sorted(pkg.rglob("*.py"))
             if builds_a_sampler(p)]
    assert users == ["sandbox/dp/samplers.py"]
