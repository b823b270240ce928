"""The determinism profile: everything that must match for a replay to be bit-identical."""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict

from pipeline.errors import DeterminismError


class DeterminismProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    torch_version: str
    threads: int
    deterministic_algorithms: bool
    cpu_capability: str
    world_size: int

    @classmethod
    def current(cls, threads: int) -> DeterminismProfile:
        return cls(
            torch_version=torch.__version__,
            threads=threads,
            deterministic_algorithms=True,
            cpu_capability=torch.backends.cpu.get_cpu_capability(),
            world_size=1,
        )

    def apply(self) -> None:
        """Puts torch in this profile's mode; call before building the model."""
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic_algorithms)

    def require_same(self, recorded: DeterminismProfile) -> None:
        """Raises DeterminismError naming the first field that differs from ``recorded``."""
        for field in type(self).model_fields:
            mine, theirs = getattr(self, field), getattr(recorded, field)
            if mine != theirs:
                raise DeterminismError(
                    f"determinism profile differs in {field}: the run used {theirs!r}, "
                    f"this environment has {mine!r}; replay in the recorded environment"
                )
