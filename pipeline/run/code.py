"""The user's code a spec names: importing it (``kind: import``) from the spec's ``import_path``,
and the run's code identity (run.json's ``code``): which code that was, so a replay with other
code stops as an environment that differs (exit 3) and never reads as fraud.

Importing runs the user's module, which may raise anything; every failure is a SpecError naming
the spec key. Nothing here imports torch: the objects are whatever the user's module holds.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel, ConfigDict

from veritrain.pipeline.errors import CodeError, SpecError
from veritrain.pipeline.run.determinism import installed_torch_version
from veritrain.pipeline.run.spec import RunSpec


def one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


@contextmanager
def search_path(folders: list[str]) -> Iterator[None]:
    """``folders`` in front of Python's own path while the block imports, and only then: a run's
    import path is the spec's, not the process's (a test, a notebook, a flow keep theirs)."""
    saved = list(sys.path)
    sys.path[:0] = [f for f in folders if f not in sys.path[: len(folders)]]
    importlib.invalidate_caches()  # a module written since the process started is found
    try:
        yield
    finally:
        sys.path[:] = saved


def import_object(ref: str, key: str, folders: list[str]) -> Any:
    """The object ``ref`` (``package.module:name``) names, its module imported with ``folders``
    searched first. ``key`` is the spec key that names it, for the error."""
    module_name, name = ref.split(":")
    try:
        with search_path(folders):
            return getattr(importlib.import_module(module_name), name)
    except Exception as e:  # noqa: BLE001 - the user's module may raise anything
        raise SpecError(f"{key}: cannot import {ref!r}: {one_line(e)}") from None


class ModuleIdentity(BaseModel):
    """One imported user module, as the run's code identity holds it: by its source (the
    module's file, or every ``.py`` file of its top-level package) or, for a module that is one
    of an installed distribution's files, by that distribution."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str  # the spec key that imports it, e.g. "model.factory"
    module: str
    # By source: the file (or "package/") relative to the folder it was imported from, and the
    # sha256 of its bytes (a package's: of the sha256sum listing of its .py files).
    source: str | None = None
    sha256: str | None = None
    # By distribution: name, version and the sha256 of its RECORD file.
    distribution: str | None = None
    version: str | None = None
    record_sha256: str | None = None

    def describe(self) -> str:
        if self.distribution is not None:
            return (
                f"{self.module} from {self.distribution} {self.version} "
                f"(RECORD sha256 {(self.record_sha256 or '')[:16]}…)"
            )
        if self.sha256 is None:
            return f"{self.module} (built in, no source)"
        return f"{self.module} ({self.source}, sha256 {self.sha256[:16]}…)"


class CodeIdentity(BaseModel):
    """What code trained a run (run.json's ``code``): every module a ``kind: import`` of its spec
    imported, and torch's and veritrain's versions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    modules: list[ModuleIdentity]
    torch: str | None  # None: not installed (a canonical run needs no torch)
    veritrain: str

    def describe(self) -> str:
        mods = "; ".join(f"{m.key}: {m.describe()}" for m in self.modules) or "no imported code"
        return f"{mods}; torch {self.torch or 'not installed'}, veritrain {self.veritrain}"

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


def describe_code(code: dict[str, Any] | None) -> str:
    """A stored code identity (verify --json's ``code``) in one line."""
    if code is None:
        return "not recorded (a run made before veritrain recorded code identity)"
    return CodeIdentity.model_validate(code).describe()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _distribution_of(top: str, path: Path) -> importlib.metadata.Distribution | None:
    """The installed distribution whose RECORD lists ``path`` (an editable install's RECORD does
    not list the sources it points to: those are identified by source)."""
    for name in importlib.metadata.packages_distributions().get(top, []):
        dist = importlib.metadata.distribution(name)
        root = Path(str(dist.locate_file(""))).resolve()
        if not path.is_relative_to(root):
            continue
        if path.relative_to(root).as_posix() in {f.as_posix() for f in dist.files or []}:
            return dist
    return None


def module_identity(key: str, module: ModuleType) -> ModuleIdentity:
    name = module.__name__
    top = name.split(".")[0]
    file = getattr(module, "__file__", None)
    if file is None:
        return ModuleIdentity(key=key, module=name)
    path = Path(file).resolve()
    dist = _distribution_of(top, path)
    if dist is not None:
        return ModuleIdentity(
            key=key,
            module=name,
            distribution=dist.metadata["Name"],
            version=dist.version,
            record_sha256=_sha256((dist.read_text("RECORD") or "").encode()),
        )
    package = sys.modules.get(top)
    folders = [Path(p).resolve() for p in getattr(package, "__path__", [])]
    if not folders:
        return ModuleIdentity(
            key=key, module=name, source=path.name, sha256=_sha256(path.read_bytes())
        )
    listing = "".join(
        f"{_sha256(f.read_bytes())}  {f.relative_to(folder.parent).as_posix()}\n"
        for folder in sorted(folders)
        for f in sorted(folder.rglob("*.py"))
    )
    return ModuleIdentity(key=key, module=name, source=f"{top}/", sha256=_sha256(listing.encode()))


def code_identity(spec: RunSpec) -> CodeIdentity:
    """This machine's code for ``spec``: each import's module, imported as training imports it
    (SpecError naming the key where it cannot be)."""
    modules = []
    for key, ref in spec.imports():
        import_object(ref, key, spec.import_path)
        modules.append(module_identity(key, sys.modules[ref.split(":")[0]]))
    return CodeIdentity(
        modules=modules, torch=installed_torch_version(), veritrain=_veritrain_version()
    )


def code_fields(spec: RunSpec) -> dict[str, Any]:
    """run.json's fields for the code that trains ``spec``: ``{"code": ...}``."""
    return {"code": code_identity(spec).to_json()}


def _veritrain_version() -> str:
    try:
        return importlib.metadata.version("veritrain")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def require_same_code(recorded: CodeIdentity | None, spec: RunSpec, where: str) -> None:
    """Raises CodeError naming the first module (or package) whose code here is not the run's:
    a replay with other code would differ for that reason alone and must not read as fraud.
    torch's and veritrain's versions count for a torch-arithmetic run (veritrain's step and
    torch's kernels are its arithmetic); a canonical run's arithmetic is the protocol's, which
    its determinism profile pins. A run made before code identity (``recorded`` None) has
    nothing to compare."""
    if recorded is None:
        return
    try:
        here = code_identity(spec)
    except SpecError as e:
        raise CodeError(
            f"{where}: the run's code cannot be imported here: {e} (searched {spec.import_path}; "
            "--import-path names where this machine keeps it)"
        ) from None
    mine = {m.key: m for m in here.modules}
    for theirs in recorded.modules:
        m = mine.get(theirs.key)
        if m != theirs:
            now = m.describe() if m is not None else "nothing"
            raise CodeError(
                f"{where}: code differs in {theirs.key}: the run used {theirs.describe()}, "
                f"this machine has {now}; replay with the run's code"
            )
    if spec.arithmetic != "torch":
        return
    for name in ("torch", "veritrain"):
        if getattr(here, name) != getattr(recorded, name):
            raise CodeError(
                f"{where}: code differs in {name}: the run used "
                f"{getattr(recorded, name)}, this machine has {getattr(here, name)}; replay "
                "with the run's code"
            )
