"""The determinism profile: everything that must match for a replay to be bit-identical.

Training and replay import torch; telling which profiles this machine can replay does not (a
verifier imports no torch), so torch is imported inside the functions that need it.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError

from veritrain.pipeline.documents import MAX_JSON_BYTES, DocumentError, load_json, read_document
from veritrain.pipeline.errors import DeterminismError, UsageError

# Fields that say what a machine can replay. ``threads`` is not one of them: a replay sets the
# run's thread count itself (apply), on any machine.
MACHINE_FIELDS = ("torch_version", "deterministic_algorithms", "cpu_capability", "world_size")


class DeterminismProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    torch_version: str
    threads: int
    deterministic_algorithms: bool
    cpu_capability: str
    world_size: int

    @classmethod
    def current(cls, threads: int) -> DeterminismProfile:
        import torch

        return cls(
            torch_version=torch.__version__,
            threads=threads,
            deterministic_algorithms=True,
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
            world_size=1,
        )

    def apply(self) -> None:
        """Puts torch in this profile's mode; call before building the model."""
        import torch

        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic_algorithms)

    def require_same(self, recorded: DeterminismProfile | CanonicalProfile) -> None:
        """Raises DeterminismError naming the first field that differs from ``recorded``."""
        if isinstance(recorded, CanonicalProfile):
            raise DeterminismError(
                "determinism profile differs in arithmetic: the run is canonical, this spec is "
                "torch"
            )
        for field in type(self).model_fields:
            mine, theirs = getattr(self, field), getattr(recorded, field)
            if mine != theirs:
                raise DeterminismError(
                    f"determinism profile differs in {field}: the run used {theirs!r}, "
                    f"this environment has {mine!r}; replay in the recorded environment"
                )

    def machine_difference(self, other: DeterminismProfile | CanonicalProfile) -> str | None:
        """The first machine field (MACHINE_FIELDS) in which ``other`` differs, or None. A
        canonical run's profile differs in none: any machine replays it (its protocol version is
        the guest's, which verify checks on its own)."""
        if isinstance(other, CanonicalProfile):
            return None
        return next((f for f in MACHINE_FIELDS if getattr(self, f) != getattr(other, f)), None)


def _torch_cpu_capability(flags: set[str]) -> str:
    """torch's own choice of CPU kernels on x86-64 (ATen's compute_cpu_capability, torch 2.x):
    ATEN_CPU_CAPABILITY if set, else AVX512 with avx512vl, avx512bw, avx512dq and fma, else AVX2
    with avx2 and fma, else DEFAULT."""
    forced = os.environ.get("ATEN_CPU_CAPABILITY", "").upper()
    if forced in ("AVX512", "AVX2", "DEFAULT"):
        return forced
    if {"avx512vl", "avx512bw", "avx512dq", "fma"} <= flags:
        return "AVX512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    return "DEFAULT"


def installed_torch_version() -> str | None:
    """``torch.__version__`` without importing torch: read from the installed package's
    torch/version.py (the distribution's metadata version lacks the local part, e.g. "+cpu")."""
    try:
        path = importlib.metadata.distribution("torch").locate_file("torch/version.py")
        tree = ast.parse(Path(str(path)).read_text())
    except (importlib.metadata.PackageNotFoundError, OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        target, value = node.targets[0], node.value
        if isinstance(target, ast.Name) and target.id == "__version__":
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                return value.value
            return None
    return None


def machine_profile(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[DeterminismProfile | None, str]:
    """This machine's profile as far as it decides replays, found without importing torch:
    torch's version from the installed package's torch/version.py, its CPU capability by torch's
    rule from the CPU's flags (x86-64 Linux only). Returns (profile or None, what it compared,
    or why there is none)."""
    version = installed_torch_version()
    if version is None:
        return None, "this machine, which has no readable torch installation"
    if platform.machine() not in ("x86_64", "AMD64") or not cpuinfo.is_file():
        arch = platform.machine()
        return None, f"this machine, whose torch CPU capability on {arch} is unknown without torch"
    flags: set[str] = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            break
    profile = DeterminismProfile(
        torch_version=version,
        threads=1,
        deterministic_algorithms=True,
        cpu_capability=_torch_cpu_capability(flags),
        world_size=1,
    )
    return profile, "this machine (torch/version.py and /proc/cpuinfo read, torch not imported)"


def load_profiles(path: str | Path) -> list[DeterminismProfile]:
    """Profiles from a JSON file: one profile object (as in run.json's ``determinism``) or a
    list of them. Raises UsageError naming the file."""
    where = f"--replayable-profile {path}"
    try:
        doc = load_json(read_document(path, MAX_JSON_BYTES))
    except OSError as e:
        raise UsageError(f"{where}: cannot read: {e.strerror}") from None
    except DocumentError as e:
        raise UsageError(f"{where}: {e}") from None
    except ValueError as e:
        raise UsageError(f"{where}: not JSON ({e})") from None
    items = doc if isinstance(doc, list) else [doc]
    try:
        return [DeterminismProfile.model_validate(p) for p in items]
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise UsageError(f"{where}: not a determinism profile ({loc}: {err['msg']})") from None


class CanonicalProfile(BaseModel):
    """A canonical run's determinism profile (``arithmetic: canonical``): its steps are integer
    arithmetic fixed by the protocol (PROTOCOL.md §15), so every machine with this protocol
    version replays them bit for bit, whatever its torch version, threads or CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arithmetic: Literal["canonical"] = "canonical"
    protocol_version: int

    @classmethod
    def current(cls) -> CanonicalProfile:
        from veritrain.prover import PROTOCOL_VERSION

        return cls(protocol_version=PROTOCOL_VERSION)

    def require_same(self, recorded: DeterminismProfile | CanonicalProfile) -> None:
        """Raises DeterminismError unless ``recorded`` is a canonical profile of this protocol
        version."""
        if not isinstance(recorded, CanonicalProfile):
            raise DeterminismError(
                "determinism profile differs in arithmetic: the run used torch, this spec is "
                "canonical"
            )
        if recorded.protocol_version != self.protocol_version:
            raise DeterminismError(
                f"determinism profile differs in protocol_version: the run used "
                f"{recorded.protocol_version}, this build implements {self.protocol_version}"
            )


def _arithmetic(profile: Any) -> str:
    """Which profile a manifest's ``determinism`` is: a torch profile has no ``arithmetic``."""
    if isinstance(profile, dict):
        return "canonical" if profile.get("arithmetic") == "canonical" else "torch"
    return "canonical" if isinstance(profile, CanonicalProfile) else "torch"


# A tagged union, so that a malformed profile is reported against the one model its arithmetic
# names (``lacks determinism.threads``), not against every member. The tags are the spec's
# ``arithmetic`` values; a validation error's path carries them (entries.describe drops them).
PROFILE_TAGS = ("torch", "canonical")
Profile = Annotated[
    Annotated[DeterminismProfile, Tag("torch")] | Annotated[CanonicalProfile, Tag("canonical")],
    Discriminator(_arithmetic),
]


def current_profile(arithmetic: str, threads: int) -> Profile:
    """The profile a run of this arithmetic has in this environment."""
    if arithmetic == "canonical":
        return CanonicalProfile.current()
    return DeterminismProfile.current(threads)
