"""The run spec: what to train and how to commit to it, loaded from YAML or JSON."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from veritrain.pipeline.documents import MAX_YAML_BYTES, DocumentError, load_yaml, read_document
from veritrain.pipeline.errors import SpecError, UsageError
from veritrain.pipeline.run.tasks import (
    IMPORT_REF,
    DatasetSpec,
    DigitsDataset,
    FileDataset,
    ImportedLoss,
    ShardsDataset,
    Task,
    TextDataset,
    check_task,
    default_task,
)
from veritrain.pipeline.store.uris import S3_SCHEME, store_uri_problem
from veritrain.prover import steps_per_epoch
from veritrain.prover.results import Schedule

# Field widths of the protocol (PROTOCOL.md): epochs, steps and the sampler seed are u64; the
# dataset length is at most u32::MAX (the guest indexes samples with 32-bit words), so the batch
# size, which may not exceed it, is too.
U64_MAX = 2**64 - 1
U32_MAX = 2**32 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class MlpModel(_Strict):
    kind: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(gt=0)]] = [64]


class CnnModel(_Strict):
    """A small CNN for square single-channel images (e.g. 8x8 digits)."""

    kind: Literal["cnn"] = "cnn"
    channels: list[Annotated[int, Field(gt=0)]] = [8, 16]


class ImportedModel(_Strict):
    """``package.module:function``, called with the dataset's description by keyword
    (``task``, ``input_shape``, ``in_features`` and ``classes``, ``targets`` or ``vocab_size``
    and ``context`` by task: those its signature takes) and ``kwargs``; a factory that takes
    none of them by name is called as ``function(in_features, classes, **kwargs)`` (regression:
    targets; language model: vocab_size). Its module is searched for in the spec's
    ``import_path`` first."""

    kind: Literal["import"] = "import"
    factory: Annotated[str, Field(pattern=IMPORT_REF)]
    kwargs: dict[str, Any] = {}


class SgdOptimizer(_Strict):
    kind: Literal["sgd"] = "sgd"
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    weight_decay: Annotated[float, Field(ge=0)] = 0.0


class AdamOptimizer(_Strict):
    kind: Literal["adam"] = "adam"
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (
        0.9,
        0.999,
    )
    eps: Annotated[float, Field(gt=0)] = 1e-8
    weight_decay: Annotated[float, Field(ge=0)] = 0.0


class ImportedOptimizer(_Strict):
    """Any ``torch.optim`` class or an importable one (``package.module.Class`` or
    ``package.module:Class``), built as ``Class(parameters, lr=0.0, **kwargs)``; the schedule
    sets each step's rate. Its module is searched for in the spec's ``import_path`` first."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        validate_by_name=True,
        serialize_by_alias=True,
    )

    kind: Literal["import"] = "import"
    class_: Annotated[str, Field(alias="class", pattern=r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$")]
    kwargs: dict[str, Any] = {}

    @property
    def ref(self) -> str:
        """``module:Class``, however the spec wrote it."""
        if ":" in self.class_:
            return self.class_
        module, _, name = self.class_.rpartition(".")
        return f"{module}:{name}"


class ScheduleSpec(_Strict):
    """The learning-rate schedule as a spec writes it: the core's ``Schedule`` (PROTOCOL.md §6),
    which computes every rate, less cosine's ``total_steps``, which is the run's step count
    (``RunSpec.schedule_for``). ``cosine``: linear warmup, then cosine decay to ``min_lr`` over
    the run's remaining steps; ``inverse_sqrt``: linear warmup, then
    ``base_lr * sqrt(warmup_steps / (step + 1))``."""

    kind: Literal["constant", "step_decay", "linear_warmup", "cosine", "inverse_sqrt"] = "constant"
    base_lr: float
    # u64 fields of the encoding (PROTOCOL.md §6); the core says which values a kind takes.
    step_size: Annotated[int, Field(ge=0, le=U64_MAX)] | None = None
    gamma: float | None = None
    warmup_steps: Annotated[int, Field(ge=0, le=U64_MAX)] | None = None
    min_lr: float | None = None

    @model_validator(mode="after")
    def _core_rules(self) -> ScheduleSpec:
        if self.kind == "cosine" and (self.warmup_steps is None or self.min_lr is None):
            raise ValueError("kind 'cosine' takes exactly the extra fields warmup_steps and min_lr")
        # The core's rules, each field's and the kind's; the warmup's length against the run's
        # is check_sizes's, which knows the run's steps.
        try:
            self.for_run(U64_MAX)
        except ValueError as e:
            raise ValueError(str(e).removeprefix("schedule: ").removeprefix("schedule ")) from None
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # As the core's JSON form: min_lr only where the kind has it, so the spec of any other
        # kind reads (and hashes, default_run_id) as it did before cosine.
        d: dict[str, Any] = handler(self)
        if self.min_lr is None:
            d.pop("min_lr", None)
        return d

    def for_run(self, total_steps: int) -> Schedule:
        """The core's schedule of a run of ``total_steps`` steps."""
        fields = self.model_dump(exclude_none=True)
        if self.kind == "cosine":
            fields["total_steps"] = total_steps
        return Schedule(**fields)


OptimizerSpec = Annotated[
    SgdOptimizer | AdamOptimizer | ImportedOptimizer, Field(discriminator="kind")
]


class RunSpec(_Strict):
    """Everything that determines a run. Its canonical JSON is stored in the run manifest."""

    # What the model learns (pipeline/run/tasks.py); by default the dataset's own task.
    task: Task = "classification"
    model: Annotated[MlpModel | CnnModel | ImportedModel, Field(discriminator="kind")] = MlpModel()
    dataset: DatasetSpec = DigitsDataset()
    # None: the task's own loss (cross-entropy, mean squared error, next-token cross-entropy).
    loss: ImportedLoss | None = None
    optimizer: OptimizerSpec = SgdOptimizer()
    schedule: ScheduleSpec = ScheduleSpec(kind="constant", base_lr=0.05)
    # Gradient clipping: the gradients' total L2 norm is scaled down to at most this before the
    # optimizer step (the record's grad norm is the norm before clipping). None: no clipping.
    max_grad_norm: Annotated[float, Field(gt=0)] | None = None
    # Gradient accumulation: each step's batch runs forward and backward in this many
    # micro-batches (numpy.array_split of the sampler's batch), then one optimizer step.
    micro_batches: Annotated[int, Field(ge=1, le=U32_MAX)] = 1
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    epochs: Annotated[int, Field(gt=0, le=U64_MAX)] = 1
    batch_size: Annotated[int, Field(gt=0, le=U32_MAX)] = 32
    state_every: Annotated[int, Field(gt=0, le=U64_MAX)] = 100
    checkpoint_every: Annotated[int, Field(gt=0, le=U64_MAX)] = 100
    finalize_every: Annotated[int, Field(ge=0, le=U64_MAX)] = 1
    challenge_window: Annotated[float, Field(ge=0)] = 7 * 24 * 3600.0
    threads: Annotated[int, Field(gt=0)] = 1
    store: str = "./veritrain-store"
    # Folders searched, before Python's own path, for the modules of every ``kind: import``.
    # Loading a spec makes each absolute and, where a spec with an import gives none, sets it to
    # the spec file's folder and the current one (resolve_paths).
    import_path: list[Annotated[str, Field(min_length=1)]] = []
    # torch: the model's own torch arithmetic, replayable only in the recorded determinism
    # profile. canonical: the fixed-point MLP of PROTOCOL.md §15, the same bits on any machine,
    # and each epoch's receipt re-executes zk_steps_per_epoch Fiat-Shamir-chosen steps.
    arithmetic: Literal["torch", "canonical"] = "torch"
    zk_steps_per_epoch: Annotated[int, Field(ge=1, le=U32_MAX)] = 1

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # The guest needs the pre-step state of any step it samples: every record of a canonical
        # run carries its state digest, so state_every defaults to 1 there.
        if data.get("arithmetic") == "canonical":
            data = {"state_every": 1, **data}
        return default_task(data)

    @model_validator(mode="after")
    def _rules(self) -> RunSpec:
        check_task(self.task, self.dataset.kind, self.model.kind)
        if isinstance(self.dataset, ShardsDataset) and "://" in self.dataset.uri:
            uri = self.dataset.uri
            if not uri.startswith(S3_SCHEME):
                raise ValueError(
                    f"dataset.uri: {uri}: shards are in a local folder or s3://bucket[/prefix]"
                )
            if problem := store_uri_problem(uri):
                raise ValueError(f"dataset.uri: {uri}: {problem}")
        if self.micro_batches > self.batch_size:
            raise ValueError(
                f"micro_batches: {self.micro_batches} micro-batches of a batch of "
                f"{self.batch_size} samples leave some empty"
            )
        if self.arithmetic == "torch":
            if self.zk_steps_per_epoch != 1:
                raise ValueError(
                    "zk_steps_per_epoch re-executes canonical steps; it needs arithmetic: canonical"
                )
            return self
        if isinstance(self.dataset, ShardsDataset):
            raise ValueError(
                "dataset: arithmetic: canonical does not read sharded datasets yet (the guest "
                "checks samples against a flat dataset root); this needs arithmetic: torch"
            )
        if not isinstance(self.model, MlpModel):
            raise ValueError(
                f"arithmetic: canonical trains model kind mlp only, not {self.model.kind}"
            )
        if self.task != "classification":
            raise ValueError(
                f"task: arithmetic: canonical trains classification only (PROTOCOL.md §15), "
                f"not {self.task}; this needs arithmetic: torch"
            )
        if self.loss is not None:
            raise ValueError(
                "loss: arithmetic: canonical has the MLP's cross-entropy only (PROTOCOL.md §15); "
                "an imported loss needs arithmetic: torch"
            )
        for key, torch_only in (
            ("optimizer", isinstance(self.optimizer, ImportedOptimizer)),
            ("max_grad_norm", self.max_grad_norm is not None),
            ("micro_batches", self.micro_batches != 1),
        ):
            if torch_only:
                raise ValueError(
                    f"{key}: arithmetic: canonical has sgd and adam without clipping or "
                    "micro-batches (PROTOCOL.md §15); this needs arithmetic: torch"
                )
        if self.state_every != 1:
            raise ValueError(
                "state_every: a canonical run commits every step's state (1), not "
                f"{self.state_every}"
            )
        return self

    @field_validator("store")
    @classmethod
    def _store_uri(cls, v: str) -> str:
        problem = store_uri_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    def imports(self) -> list[tuple[str, str]]:
        """Every ``kind: import`` of the spec: (its spec key, ``module:name``)."""
        out = []
        if isinstance(self.model, ImportedModel):
            out.append(("model.factory", self.model.factory))
        if isinstance(self.optimizer, ImportedOptimizer):
            out.append(("optimizer.class", self.optimizer.ref))
        if self.loss is not None:
            out.append(("loss.fn", self.loss.fn))
        return out

    def schedule_for(self, dataset_len: int) -> Schedule:
        """The core's schedule of this run on a dataset of ``dataset_len`` samples (a cosine
        schedule decays over the run's steps, ``epochs * steps_per_epoch``): what each step's
        rate and each epoch's claim come from."""
        return self.schedule.for_run(self.epochs * steps_per_epoch(dataset_len, self.batch_size))

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def _describe(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
    msg = err["msg"].removeprefix("Value error, ") if err["type"] == "value_error" else err["msg"]
    if not err["loc"] and err["type"] == "value_error":
        # A rule across fields (RunSpec's validators): its message names the field.
        return f"{msg}{more}"
    return f"{loc}: {msg}{more}"


def check_sizes(spec: RunSpec, dataset_len: int) -> None:
    """The limits that need the dataset's length: the batch fits the dataset, the dataset fits the
    protocol's u32 length, and every step number of the run fits its u64 field."""
    if dataset_len > U32_MAX:
        raise SpecError(f"dataset: {dataset_len} samples, more than the protocol's {U32_MAX}")
    if spec.batch_size > dataset_len:
        raise SpecError(
            f"batch_size: {spec.batch_size} is more than the dataset's {dataset_len} samples"
        )
    steps = spec.epochs * steps_per_epoch(dataset_len, spec.batch_size)
    if steps > U64_MAX:
        raise SpecError(
            f"epochs: {spec.epochs} epochs make {steps} steps, more than a step "
            "number (u64) can hold"
        )
    warmup = spec.schedule.warmup_steps
    if warmup is not None and warmup > steps:
        raise SpecError(
            f"schedule.warmup_steps: {warmup} warmup steps, more than the run's {steps} steps "
            f"({spec.epochs} x {steps // spec.epochs} an epoch)"
        )


def _absolute(path: str, base: Path) -> str:
    return str(Path(os.path.abspath(base / Path(path).expanduser())))


def resolve_paths(spec: RunSpec, base: str | Path | None = None) -> RunSpec:
    """``spec`` with every path made absolute: relative ones are ``base``'s (the spec file's
    folder; None: the current folder), so the spec a manifest stores names the very files and
    folders the run used, whichever folder a replay runs in. A spec with a ``kind: import`` and
    no ``import_path`` gets ``[base, current folder]``. The store is a URI, not a path of the
    spec: a relative local store stays the current folder's."""
    here = Path.cwd()
    folder = here if base is None else Path(_absolute(str(base), here))
    update: dict[str, Any] = {}
    if isinstance(spec.dataset, (FileDataset, TextDataset)):
        update["dataset"] = spec.dataset.model_copy(
            update={"path": _absolute(spec.dataset.path, folder)}
        )
    elif isinstance(spec.dataset, ShardsDataset) and not spec.dataset.uri.startswith(S3_SCHEME):
        update["dataset"] = spec.dataset.model_copy(
            update={"uri": _absolute(spec.dataset.uri, folder)}
        )
    paths = spec.import_path
    if not paths and spec.imports():
        paths = [str(folder), str(here)]
    update["import_path"] = list(dict.fromkeys(_absolute(p, folder) for p in paths))
    return spec.model_copy(update=update)


@dataclass(frozen=True)
class LocalCopy:
    """Where this machine keeps a run's dataset and code when not where the run's spec names them
    (its paths are the trainer's): a replay reads them from here instead. Safe to trust, since a
    replay checks the dataset against the run's dataset root and the code against its code
    identity before it re-executes a step."""

    dataset: str | None = None  # a file, corpus, or shard folder or s3:// prefix
    import_path: tuple[str, ...] = ()

    def apply(self, spec: RunSpec) -> RunSpec:
        update: dict[str, Any] = {}
        if self.dataset is not None:
            d = spec.dataset
            here = self.dataset if "://" in self.dataset else _absolute(self.dataset, Path.cwd())
            if isinstance(d, (FileDataset, TextDataset)):
                update["dataset"] = d.model_copy(update={"path": here})
            elif isinstance(d, ShardsDataset):
                update["dataset"] = d.model_copy(update={"uri": here})
            else:
                raise UsageError(
                    f"--dataset: the run's dataset is {d.kind}, which has no path to point "
                    "elsewhere (it is the same on every machine)"
                )
        if self.import_path:
            update["import_path"] = [_absolute(p, Path.cwd()) for p in self.import_path]
        return spec.model_copy(update=update) if update else spec


def parse_spec(data: Any, source: str = "spec", base: str | Path | None = None) -> RunSpec:
    """A spec from a mapping, its paths resolved against ``base`` (resolve_paths)."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec is a mapping of keys, got {type(data).__name__}")
    try:
        spec = RunSpec.model_validate(data)
    except ValidationError as e:
        raise SpecError(f"{source}: {_describe(e)}") from None
    return resolve_paths(spec, base)


def load_spec(path: str | Path) -> RunSpec:
    """Loads a spec from YAML (or JSON, which is YAML). Raises SpecError naming file and key."""
    p = Path(path)
    try:
        raw = read_document(p, MAX_YAML_BYTES)
    except OSError as e:
        raise SpecError(f"{p}: cannot read the spec: {e.strerror}") from None
    except DocumentError as e:
        raise SpecError(f"{p}: {e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(
            f"{p}: not UTF-8 text (byte {raw[e.start]:#04x} at offset {e.start})"
        ) from None
    import yaml  # here, not at the top: verify reads specs from run.json, never from YAML

    try:
        data = load_yaml(text)
    except DocumentError as e:
        raise SpecError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        raise SpecError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
    return parse_spec(data, str(p), p.parent)


def spec_json_schema() -> dict[str, Any]:
    return RunSpec.model_json_schema()
