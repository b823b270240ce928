"""The model registry: a small MLP, a small CNN, or any ``module:factory``."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from veritrain.pipeline.data.datasets import Dataset
from veritrain.pipeline.errors import SpecError
from veritrain.pipeline.run.code import import_object, one_line
from veritrain.pipeline.run.spec import (
    AdamOptimizer,
    CnnModel,
    ImportedModel,
    ImportedOptimizer,
    MlpModel,
    RunSpec,
    SgdOptimizer,
)


def _mlp(in_features: int, outputs: int, hidden: list[int]) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


def _cnn(in_features: int, outputs: int, channels: list[int]) -> nn.Module:
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
    layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(c_in * 4, outputs)]
    return nn.Sequential(*layers)


# The second positional argument of a factory that takes none of the description by name.
_LEGACY_SECOND = {
    "classification": "classes",
    "regression": "targets",
    "language_model": "vocab_size",
}


def _call_form(
    factory: Callable[..., Any], ref: str, described: dict[str, Any], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """How to call ``factory``: with the description's keywords its signature takes (all of
    them where it takes ``**kwargs``), or else as ``factory(in_features, classes, **kwargs)``
    (regression: targets; language model: vocab_size)."""
    second = _LEGACY_SECOND[described["task"]]
    legacy = ((described["in_features"], described[second]), kwargs)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have none; calling them will tell
        return legacy
    params = signature.parameters.values()
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    named = {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    given = {k: v for k, v in described.items() if takes_any or k in named}
    if given:
        try:
            signature.bind(**given, **kwargs)
            return (), {**given, **kwargs}
        except TypeError:
            pass
    try:
        signature.bind(*legacy[0], **kwargs)
        return legacy
    except TypeError as e:
        func_name = ref.split(":")[1]
        extra = "".join(f", {k}=..." for k in kwargs)
        raise SpecError(
            f"model.factory: {ref!r} cannot be called as {func_name}("
            f"{', '.join(f'{k}=...' for k in described)}{extra}) nor as "
            f"{func_name}(in_features, {second}{extra}): {e}"
        ) from None


def _import_factory(spec: ImportedModel, import_path: list[str]) -> Callable[..., Any]:
    factory = import_object(spec.factory, "model.factory", import_path)
    if not callable(factory):
        raise SpecError(
            f"model.factory: {spec.factory!r} is a {type(factory).__name__}, not callable"
        )
    return factory


def _too_large(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "allocate" in str(e))


def _build(spec: RunSpec, dataset: Dataset) -> nn.Module:
    model_spec = spec.model
    in_features, outputs = dataset.in_features, dataset.outputs
    if isinstance(model_spec, MlpModel):
        return _mlp(in_features, outputs, model_spec.hidden)
    if isinstance(model_spec, CnnModel):
        return _cnn(in_features, outputs, model_spec.channels)
    described = dataset.description()
    clash = sorted(set(model_spec.kwargs) & set(described))
    if clash:
        raise SpecError(
            f"model.kwargs: {clash[0]!r} is the dataset's description, which veritrain passes"
        )
    factory = _import_factory(model_spec, spec.import_path)
    args, kwargs = _call_form(factory, model_spec.factory, described, model_spec.kwargs)
    try:
        model = factory(*args, **kwargs)
    except Exception as e:  # the user's factory may raise anything
        if _too_large(e):
            raise
        raise SpecError(f"model.factory: {model_spec.factory!r} raised {one_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"model.factory: {model_spec.factory!r} returned {type(model).__name__}, "
            "not a torch Module"
        )
    return model


def build_model(spec: RunSpec, dataset: Dataset) -> nn.Module:
    """Builds the spec's model for ``dataset``; call after seeding torch so initialization is
    reproducible."""
    try:
        return _build(spec, dataset)
    except (MemoryError, RuntimeError) as e:
        if not _too_large(e):
            raise
        raise SpecError(f"model: too large to allocate ({one_line(e)})") from None


def parameter_bytes(spec: RunSpec, dataset: Dataset) -> int | None:
    """Bytes of the model's parameters and buffers, from a build on torch's meta device (shapes
    only, nothing allocated); None when the model cannot be built there."""
    try:
        with torch.device("meta"):
            model = _build(spec, dataset)
    except Exception:  # noqa: BLE001 - the real build reports it
        return None
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def build_optimizer(spec: RunSpec, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The learning rate is set per step from the schedule; the value here is a placeholder."""
    o = spec.optimizer
    if isinstance(o, SgdOptimizer):
        return torch.optim.SGD(params, lr=0.0, momentum=o.momentum, weight_decay=o.weight_decay)
    if isinstance(o, AdamOptimizer):
        return torch.optim.Adam(
            params, lr=0.0, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
    return _imported_optimizer(o, spec.import_path, params)


def _imported_optimizer(
    o: ImportedOptimizer, import_path: list[str], params: Iterable[nn.Parameter]
) -> torch.optim.Optimizer:
    if "lr" in o.kwargs:
        raise SpecError("optimizer.kwargs: 'lr' is the schedule's, which sets it every step")
    cls = import_object(o.ref, "optimizer.class", import_path)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise SpecError(f"optimizer.class: {o.class_!r} is not a torch.optim.Optimizer class")
    construct: Callable[..., torch.optim.Optimizer] = cls  # a subclass's own signature
    try:
        return construct(params, lr=0.0, **o.kwargs)
    except Exception as e:  # the class's own constructor may raise anything
        raise SpecError(
            f"optimizer.class: {o.class_}(parameters, lr=0.0"
            f"{''.join(f', {k}=...' for k in o.kwargs)}) raised {one_line(e)}"
        ) from None
