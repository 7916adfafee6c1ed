"""No module under sandbox/train draws noise from `random`, NumPy's generators, or a globally seeded torch RNG.

Noise comes from exactly two places: Opacus' optimizer (torch.normal on a dedicated generator reseeded from
OS entropy) and `sandbox.dp.DiscreteLaplace` (OpenDP) for the metrics and the feature standardisation. The
analyst's seed reaches parameter initialisation only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import sandbox.train

PACKAGE = Path(sandbox.train.__file__).resolve().parent
FORBIDDEN_CALLS = {("torch", "manual_seed"), ("torch", "seed"), ("torch", "randn"), ("torch", "normal"),
                   ("np", "random"), ("numpy", "random")}


def offences(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "random" or a.name.startswith("numpy.random")]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "random" or node.module.startswith("numpy.random") or (
                    node.module in ("numpy", "torch") and any(a.name in ("random", "manual_seed") for a in node.names)):
                found.append(node.module)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and (node.value.id, node.attr) in FORBIDDEN_CALLS:
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_insecure_or_global_randomness_in_sandbox_train():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 9
    assert {f.name: offences(f) for f in files if offences(f)} == {}


def test_noise_sources_are_where_the_docs_say():
    runner = (PACKAGE / "runner.py").read_text()
    assert "secrets.randbits" in runner and "noise_generator=noise_gen" in runner
    metrics = (PACKAGE / "metrics.py").read_text()
    assert "from sandbox.dp import DiscreteLaplace" in metrics
    # The seed is used for parameter initialisation only.
    users = [f.name for f in PACKAGE.rglob("*.py") if "spec.seed" in f.read_text()]
    assert users == ["runner.py"]
    assert "build_model(spec.model, width, spec.hidden_units, spec.seed)" in runner


def test_metrics_noise_is_calibrated(monkeypatch):
    import numpy as np

    from sandbox.dp import DiscreteLaplace
    from sandbox.train.metrics import release_metrics

    calibrations = []
    real = DiscreteLaplace.calibrate.__func__

    def spy(cls, sensitivity, epsilon):
        calibrations.append((sensitivity, epsilon))
        return real(cls, sensitivity, epsilon)

    monkeypatch.setattr(DiscreteLaplace, "calibrate", classmethod(spy))
    release_metrics(np.zeros(10, np.float32), np.zeros(10, np.float32), 0.1)
    from fractions import Fraction

    assert calibrations == [(1, Fraction(1, 20))]  # one calibration, both vectors at ε_metrics / 2


def test_secure_mode_needs_torchcsprng():
    """Documented finding: Opacus' secure_mode needs torchcsprng, which has no build for torch 2.x."""
    import importlib.util

    import pytest
    from opacus import PrivacyEngine

    if importlib.util.find_spec("torchcsprng") is not None:
        pytest.skip("torchcsprng is installed: switch the runner to PrivacyEngine(secure_mode=True)")
    with pytest.raises(ImportError, match="torchcsprng"):
        PrivacyEngine(secure_mode=True)


def test_noise_uses_a_dedicated_generator_with_the_floating_point_mitigation(monkeypatch):
    import numpy as np
    import torch
    from opacus.optimizers import optimizer_fast_gradient_clipping as fgc

    from sandbox.train import parse_spec, plan_training
    from sandbox.train import runner as runner_mod
    from sandbox.train._data import Split

    calls: list[tuple[bool, object]] = []
    real = fgc._generate_noise

    def spy(std, reference, generator=None, secure_mode=False):
        calls.append((secure_mode, generator))
        return real(std=std, reference=reference, generator=generator, secure_mode=secure_mode)

    monkeypatch.setattr(fgc, "_generate_noise", spy)
    spec = parse_spec({"dataset": "d", "features": ["x"], "label": "y", "model": "logistic_regression",
                       "epochs": 1, "batch_size": 16, "epsilon": 1.0, "delta": 1e-5, "max_grad_norm": 1.0})
    plan = plan_training(spec, 200)
    x = np.linspace(-1, 1, 160, dtype=np.float32).reshape(-1, 1)
    runner_mod._fit(spec, plan, Split(x, (x[:, 0] > 0).astype(np.float32)), 1, None)
    assert len(calls) == 2 * plan.steps  # weight and bias, every step
    assert all(secure for secure, _ in calls)
    generators = {id(g) for _, g in calls}
    assert len(generators) == 1 and isinstance(calls[0][1], torch.Generator)
    assert calls[0][1] is not torch.default_generator
