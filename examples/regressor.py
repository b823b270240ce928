"""The model of examples/regression.yaml: a small MLP with LayerNorm and GELU for scikit-learn's
diabetes data (10 features, 1 target). The spec names ``regressor:make``; veritrain finds this
module beside the spec and records its sha256 in the run's manifest."""

from __future__ import annotations

from torch import nn


def make(*, in_features: int, targets: int, hidden: int = 64, start: float = 0.0):
    """The factory the spec names: veritrain passes the dataset's in_features and targets;
    ``start`` (the spec's kwargs) is the output's initial bias, e.g. the targets' mean."""
    out = nn.Linear(hidden, targets)
    nn.init.constant_(out.bias, start)
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.LayerNorm(hidden),
        nn.GELU(),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        out,
    )
