"""Errors of the pipeline. Each maps to a CLI exit code (see flows/cli.py)."""

from veritrain.prover.errors import VeritrainError


class SpecError(VeritrainError):
    """The run spec is malformed (the message names the file and the key's path)."""


class DeterminismError(VeritrainError):
    """The environment's determinism profile differs from the run's (the message names the
    field)."""


class StorageError(VeritrainError):
    """The store is unreachable or an object could not be read or written."""


class ConflictError(StorageError):
    """A conditional create lost: the object already exists (another writer won)."""


class IntegrityError(VeritrainError):
    """A stored artifact is truncated, tampered or inconsistent (the message names the object)."""


class UsageError(VeritrainError):
    """A command was given something it cannot use, other than a spec (the message names it)."""


class WorkerError(VeritrainError):
    """Work handed to a pool's worker failed or was lost (the message names the flow run)."""


class MissingExtraError(VeritrainError):
    """This installation lacks an extra a command needs (the message says what to install)."""


class TrustError(VeritrainError):
    """A run's guest or trainer is not one the verifier trusts, or an epoch falls short of what
    the verifier's policy requires (the message names both sides)."""
