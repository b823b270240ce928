"""The model registry: a small MLP, a small CNN, or any ``module:factory``."""

from __future__ import annotations

import importlib
import math

import torch
from torch import nn

from pipeline.errors import SpecError
from pipeline.spec import CnnModel, ImportedModel, MlpModel


def _mlp(in_features: int, classes: int, hidden: list[int]) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, classes))
    return nn.Sequential(*layers)


def _cnn(in_features: int, classes: int, channels: list[int]) -> nn.Module:
    side = math.isqrt(in_features)
    if side * side != in_features:
        raise SpecError(f"model.kind cnn needs square single-channel images, got {in_features} features")
    layers: list[nn.Module] = [nn.Unflatten(1, (1, side, side))]
    c_in = 1
    for c in channels:
        layers += [nn.Conv2d(c_in, c, kernel_size=3, padding=1), nn.ReLU()]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(c_in * 4, classes)]
    return nn.Sequential(*layers)


def build_model(spec: MlpModel | CnnModel | ImportedModel, in_features: int, classes: int) -> nn.Module:
    """Builds the model; call after seeding torch so initialization is reproducible."""
    if isinstance(spec, MlpModel):
        return _mlp(in_features, classes, spec.hidden)
    if isinstance(spec, CnnModel):
        return _cnn(in_features, classes, spec.channels)
    module_name, func_name = spec.factory.split(":")
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as e:
        raise SpecError(f"model.factory: cannot import {spec.factory!r}: {e}") from None
    model = factory(in_features, classes, **spec.kwargs)
    if not isinstance(model, nn.Module):
        raise SpecError(f"model.factory: {spec.factory!r} returned {type(model).__name__}, not a torch Module")
    return model


def build_optimizer(spec, params) -> torch.optim.Optimizer:
    """The learning rate is set per step from the schedule; the value here is a placeholder."""
    if spec.kind == "sgd":
        return torch.optim.SGD(params, lr=0.0, momentum=spec.momentum, weight_decay=spec.weight_decay)
    return torch.optim.Adam(
        params, lr=0.0, betas=tuple(spec.betas), eps=spec.eps, weight_decay=spec.weight_decay
    )
