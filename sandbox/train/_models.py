"""The two model families: logistic regression and a one-hidden-layer ReLU MLP, each emitting one logit.

Parameters are initialised from a ``torch.Generator`` seeded with the spec's ``seed`` (never the global
generator), so the seed touches initialisation only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from sandbox.train.spec import ModelKind


def _init_linear(layer: nn.Linear, gen: torch.Generator, zero: bool = False) -> None:
    with torch.no_grad():
        if zero:
            layer.weight.zero_()
            layer.bias.zero_()
            return
        bound = 1.0 / math.sqrt(layer.in_features)
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)


class LogisticRegression(nn.Module):
    def __init__(self, width: int, gen: torch.Generator) -> None:
        super().__init__()
        self.linear = nn.Linear(width, 1)
        _init_linear(self.linear, gen, zero=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int, gen: torch.Generator) -> None:
        super().__init__()
        self.hidden = nn.Linear(width, hidden)
        self.output = nn.Linear(hidden, 1)
        _init_linear(self.hidden, gen)
        _init_linear(self.output, gen)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.hidden(x))).squeeze(-1)


def build_model(kind: ModelKind, width: int, hidden: int | None, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    if kind == "logistic_regression":
        return LogisticRegression(width, gen)
    return MLP(width, hidden or 32, gen)


def first_layer(model: nn.Module) -> nn.Linear:
    """The layer that reads the encoded inputs (where a standardisation is folded back in)."""
    layer = model.linear if isinstance(model, LogisticRegression) else model.hidden
    assert isinstance(layer, nn.Linear)
    return layer


def tensors_of(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's parameters as float32 NumPy arrays, keyed as in the weights file."""
    return {k: v.detach().to(torch.float32).contiguous().numpy().copy() for k, v in model.state_dict().items()}
