"""The model registry: a small MLP, a small CNN, or any ``module:factory``."""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from veritrain.pipeline.errors import SpecError
from veritrain.pipeline.run.spec import (
    AdamOptimizer,
    CnnModel,
    ImportedModel,
    MlpModel,
    SgdOptimizer,
)

ModelSpec = MlpModel | CnnModel | ImportedModel


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
        raise SpecError(
            f"model.kind cnn needs square single-channel images, got {in_features} features"
        )
    layers: list[nn.Module] = [nn.Unflatten(1, (1, side, side))]
    c_in = 1
    for c in channels:
        layers += [nn.Conv2d(c_in, c, kernel_size=3, padding=1), nn.ReLU()]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(c_in * 4, classes)]
    return nn.Sequential(*layers)


def _import_factory(spec: ImportedModel) -> Callable[..., Any]:
    """The factory, checked to be callable as ``factory(in_features, classes, **kwargs)``."""
    module_name, func_name = spec.factory.split(":")
    # Importing runs the user's module, which may raise anything.
    try:
        factory = getattr(importlib.import_module(module_name), func_name)
    except Exception as e:  # noqa: BLE001
        raise SpecError(f"model.factory: cannot import {spec.factory!r}: {_one_line(e)}") from None
    if not callable(factory):
        raise SpecError(
            f"model.factory: {spec.factory!r} is a {type(factory).__name__}, not callable"
        )
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have none; calling them will tell
        return factory
    try:
        signature.bind(0, 0, **spec.kwargs)
    except TypeError as e:
        raise SpecError(
            f"model.factory: {spec.factory!r} cannot be called as "
            f"{func_name}(in_features, classes{', ' if spec.kwargs else ''}"
            f"{', '.join(f'{k}=...' for k in spec.kwargs)}): {e}"
        ) from None
    return factory


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _too_large(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "allocate" in str(e))


def _build(spec: ModelSpec, in_features: int, classes: int) -> nn.Module:
    if isinstance(spec, MlpModel):
        return _mlp(in_features, classes, spec.hidden)
    if isinstance(spec, CnnModel):
        return _cnn(in_features, classes, spec.channels)
    factory = _import_factory(spec)
    try:
        model = factory(in_features, classes, **spec.kwargs)
    except Exception as e:  # the user's factory may raise anything
        if _too_large(e):
            raise
        raise SpecError(f"model.factory: {spec.factory!r} raised {_one_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"model.factory: {spec.factory!r} returned {type(model).__name__}, not a torch Module"
        )
    return model


def build_model(spec: ModelSpec, in_features: int, classes: int) -> nn.Module:
    """Builds the model; call after seeding torch so initialization is reproducible."""
    try:
        return _build(spec, in_features, classes)
    except (MemoryError, RuntimeError) as e:
        if not _too_large(e):
            raise
        raise SpecError(f"model: too large to allocate ({_one_line(e)})") from None


def parameter_bytes(spec: ModelSpec, in_features: int, classes: int) -> int | None:
    """Bytes of the model's parameters and buffers, from a build on torch's meta device (shapes
    only, nothing allocated); None when the model cannot be built there."""
    try:
        with torch.device("meta"):
            model = _build(spec, in_features, classes)
    except Exception:  # noqa: BLE001 - the real build reports it
        return None
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def build_optimizer(
    spec: SgdOptimizer | AdamOptimizer, params: Iterable[nn.Parameter]
) -> torch.optim.Optimizer:
    """The learning rate is set per step from the schedule; the value here is a placeholder."""
    if spec.kind == "sgd":
        return torch.optim.SGD(
            params, lr=0.0, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    return torch.optim.Adam(
        params, lr=0.0, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay
    )
