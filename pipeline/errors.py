"""Errors of the pipeline. Each kind carries the command line's exit code for it (``exit_code``;
the codes are prover/errors.py's), which flows/cli.py reads in one place."""

from veritrain.prover.errors import EXIT_ENV, EXIT_FAILED, EXIT_USAGE, VeritrainError


class SpecError(VeritrainError):
    """The run spec is malformed (the message names the file and the key's path)."""

    exit_code = EXIT_USAGE


class DeterminismError(VeritrainError):
    """The environment's determinism profile differs from the run's (the message names the
    field)."""

    exit_code = EXIT_ENV


class CodeError(DeterminismError):
    """This machine's code for a run (an imported module, torch, veritrain) is not the code its
    manifest records (the message names the module)."""


class StorageError(VeritrainError):
    """The store is unreachable or an object could not be read or written."""

    exit_code = EXIT_ENV


class DatasetChangedError(VeritrainError):
    """A shard of a sharded dataset is not the one its dataset root (or the run's manifest)
    committed to: changed, replaced or gone since (the message names the shard)."""

    exit_code = EXIT_ENV


class ConflictError(StorageError):
    """A condition on an object did not hold: a conditional create lost (the object already
    exists: another writer won), or a read pinned to an ETag found the object replaced."""


class IntegrityError(VeritrainError):
    """A stored artifact is truncated, tampered or inconsistent (the message names the object)."""

    exit_code = EXIT_FAILED


class UsageError(VeritrainError):
    """A command was given something it cannot use, other than a spec (the message names it)."""

    exit_code = EXIT_USAGE


class WorkerError(VeritrainError):
    """Work handed to a pool's worker failed or was lost (the message names the flow run)."""

    exit_code = EXIT_ENV


class MissingExtraError(VeritrainError):
    """This installation lacks an extra a command needs (the message says what to install)."""

    exit_code = EXIT_ENV


class TrustError(VeritrainError):
    """A run's guest or trainer is not one the verifier trusts, or an epoch falls short of what
    the verifier's policy requires (the message names both sides)."""

    exit_code = EXIT_FAILED
