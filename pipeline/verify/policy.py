"""The verifier's trust roots and requirements: one ``Policy``, used by verify, audit and status.

run.json names the guest that proved a run (its image id) and the key that signed its ledger. The
store is never its own trust root, so the verifier says which guests and which trainers it trusts,
and this module decides whether a run's are among them. A policy also says what every epoch asked
about must reach: a status (``proven`` or ``final``) and guarantees (PROTOCOL.md §9).

A policy comes from a YAML file (``--policy``, schema docs/schemas/policy.schema.json), from the
flags ``--image-id``, ``--trainer-key`` and ``--require-pinned``, or both: the flags add to the
file. Guests: when no image id is named, the one accepted is this installation's
(``prover.image_id()``); once any is named, exactly the named ones are, and ``installed`` names
this installation's. Trainers: when no key is named the trainer is ``unpinned``, the run's own key
is taken and the report says so; ``require_pinned`` makes that a failure.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from veritrain.pipeline.documents import MAX_YAML_BYTES, DocumentError, load_yaml, read_document
from veritrain.pipeline.errors import TrustError, UsageError
from veritrain.prover import image_id as installed_image_id
from veritrain.prover.results import GUARANTEE_NAMES

INSTALLED = "installed"
# The epoch statuses (pipeline/verify/checks.py) that reach a required one. An unreplayable epoch
# is proven, but nobody the verifier trusts could have challenged it, so it is not final.
REACHES = {"proven": ("proven", "unreplayable", "final"), "final": ("final",)}
_SHORT_OF = {
    "committed": "it has no verified receipt",
    "proven": "its challenge window has not passed",
    "unreplayable": "no determinism profile the verifier can replay could have challenged it",
    "disputed": "a fraud proof against it is upheld",
}
_BITS = {name: bit for bit, name in GUARANTEE_NAMES.items()}

_HEX64 = re.compile("[0-9a-fA-F]{64}")
_PEM = re.compile(r"\s*-----BEGIN PUBLIC KEY-----[\s\S]+-----END PUBLIC KEY-----\s*")


def _need_str(value: Any) -> str:
    if not isinstance(value, str):
        # ValueError, not TypeError: pydantic reports only a ValueError as the field's error.
        raise ValueError(  # noqa: TRY004
            f"not a string but {type(value).__name__} (quote hex digits in YAML)"
        )
    return value


def image_id_hex(value: Any) -> str:
    """A guest's image id as a policy names it: 64 hex digits (lowercased) or ``installed``."""
    value = _need_str(value)
    if value != INSTALLED and not _HEX64.fullmatch(value):
        raise ValueError(f"not an image id: 64 hex digits or {INSTALLED!r}")
    return value.lower()


def trainer_key_hex(value: Any) -> str:
    """A trainer's Ed25519 public key in run.json's form (``public_key``: the raw 32 bytes as 64
    lowercase hex digits), from that form or a PEM public key."""
    text = _need_str(value).strip()
    if _HEX64.fullmatch(text):
        return text.lower()
    if "PRIVATE KEY-----" in text:
        raise ValueError("holds a private key; pin its public half (openssl pkey -pubout)")
    if not _PEM.fullmatch(text):
        raise ValueError(
            "not a trainer key: 64 hex digits, as run.json's public_key, or a PEM public key"
        )
    try:
        key = serialization.load_pem_public_key(text.encode())
    except ValueError:
        raise ValueError("not a readable PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(  # noqa: TRY004 - as in _need_str
            "a PEM public key, but not an Ed25519 one (run keys are Ed25519)"
        )
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def trainer_key_arg(value: str, flag: str = "--trainer-key") -> str:
    """``--trainer-key FILE|HEX``: 64 hex digits, or a file holding a PEM public key or them."""
    if _HEX64.fullmatch(value.strip()):
        return value.strip().lower()
    try:
        text = Path(value).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(
            f"{flag} {value}: neither 64 hex digits nor a readable file ({e.strerror})"
        ) from None
    except UnicodeDecodeError:
        raise UsageError(
            f"{flag} {value}: not a text file (a PEM public key or 64 hex digits)"
        ) from None
    try:
        return trainer_key_hex(text)
    except ValueError as e:
        raise UsageError(f"{flag} {value}: {e}") from None


def image_id_arg(value: str, flag: str = "--image-id") -> str:
    try:
        return image_id_hex(value)
    except ValueError as e:
        raise UsageError(f"{flag} {value}: {e}") from None


# The patterns are for the published schema; the validators, run first, say what is wrong.
ImageId = Annotated[
    str,
    Field(pattern=f"^([0-9a-fA-F]{{64}}|{INSTALLED})$"),
    BeforeValidator(image_id_hex),
]
TrainerKey = Annotated[
    str,
    Field(pattern=f"^([0-9a-fA-F]{{64}}|{_PEM.pattern})$"),
    BeforeValidator(trainer_key_hex),
]
if TYPE_CHECKING:
    Guarantee = str  # a Literal made at run time, from the core's names, is a str to mypy
else:
    Guarantee = Literal[tuple(GUARANTEE_NAMES.values())]


class Policy(BaseModel):
    """What a verifier trusts and requires; the content of a ``--policy`` file."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="veritrain verification policy")

    image_ids: Annotated[list[ImageId], Field(min_length=1)] | None = Field(
        None,
        description="guests whose receipts are accepted, by image id (64 hex digits) or "
        f"'{INSTALLED}' for this installation's guest; absent: this installation's only",
    )
    trainer_keys: list[TrainerKey] = Field(
        [],
        description="trainer public keys the run's ledger may be signed by: 64 hex digits (as "
        "run.json's public_key) or a PEM Ed25519 public key; empty: unpinned",
    )
    require_pinned: bool = Field(False, description="an unpinned trainer fails verification")
    required_status: Literal["proven", "final"] | None = Field(
        None, description="the status every verified epoch must reach"
    )
    required_guarantees: list[Guarantee] = Field(
        [], description="guarantees (PROTOCOL.md §9) every verified epoch's claim must carry"
    )

    def with_flags(
        self, image_ids: list[str], trainer_keys: list[str], require_pinned: bool
    ) -> Policy:
        """This policy with the command line's additions (already checked by the *_arg
        functions)."""
        ids = list(dict.fromkeys([*(self.image_ids or []), *image_ids]))
        return self.model_copy(
            update={
                "image_ids": ids or None,
                "trainer_keys": list(dict.fromkeys([*self.trainer_keys, *trainer_keys])),
                "require_pinned": self.require_pinned or require_pinned,
            }
        )

    def accepted_image_ids(self) -> list[str]:
        installed = installed_image_id().hex()
        named = self.image_ids or [INSTALLED]
        return list(dict.fromkeys(installed if i == INSTALLED else i for i in named))

    @property
    def pinned(self) -> bool:
        return bool(self.trainer_keys)

    def check_image_id(self, run_image_id: bytes, where: str) -> str:
        """The run's guest (run.json's image id, which every receipt is verified against) is
        one the verifier accepts."""
        run, installed = run_image_id.hex(), installed_image_id().hex()
        accepted = self.accepted_image_ids()
        if run in accepted:
            return f"{run} ({'this installation' if run == installed else 'the policy'} accepts it)"
        named = ", ".join(f"{i} (this installation's)" if i == installed else i for i in accepted)
        raise TrustError(
            f"{where}: the run was proven by guest {run}, not by one this verifier accepts "
            f"({named}); if you trust that guest, accept it with --image-id {run}"
        )

    def check_trainer_key(self, run_key: str, where: str) -> str:
        """The key the run's ledger is signed by (run.json's public key) is a pinned one, or
        no key is pinned and the policy allows that."""
        if run_key in self.trainer_keys:
            return f"trainer: pinned ({run_key})"
        if self.pinned:
            raise TrustError(
                f"{where}: the run is signed by trainer key {run_key}, not by a pinned one "
                f"({', '.join(self.trainer_keys)})"
            )
        if self.require_pinned:
            raise TrustError(
                f"{where}: trainer: unpinned, and the policy requires a pinned trainer key; "
                f"the run is signed by {run_key} (pin it with --trainer-key)"
            )
        return f"trainer: unpinned (the run is signed by {run_key}; pin it with --trainer-key)"

    def check_status(self, status: str) -> str:
        if self.required_status is None:
            return f"{status}; the policy requires no status"
        if status in REACHES[self.required_status]:
            return f"{status}, as the policy requires {self.required_status}"
        raise TrustError(
            f"{status}, not {self.required_status} as the policy requires: "
            f"{_SHORT_OF.get(status, 'it has not reached it')}"
        )

    def check_guarantees(self, guarantees: int) -> str:
        """The epoch's claim (the receipt's journal, where there is one) carries every
        required guarantee."""
        missing = [g for g in self.required_guarantees if not guarantees & _BITS[g]]
        if missing:
            have = [name for bit, name in GUARANTEE_NAMES.items() if guarantees & bit]
            raise TrustError(
                f"the claim carries {', '.join(have) or 'no guarantees'} ({guarantees}), not "
                f"{', '.join(missing)} as the policy requires"
            )
        return f"carries {', '.join(self.required_guarantees)}"

    def trust_json(self) -> dict[str, Any]:
        """The trust roots and requirements a report was made under (verify --json's
        ``trust``)."""
        return {
            "image_ids": self.accepted_image_ids(),
            "trainer": "pinned" if self.pinned else "unpinned",
            "trainer_keys": list(self.trainer_keys),
            "require_pinned": self.require_pinned,
            "required_status": self.required_status,
            "required_guarantees": list(self.required_guarantees),
        }


def policy_json_schema() -> dict[str, Any]:
    return Policy.model_json_schema()


def policy_from(
    path: str | Path | None,
    image_ids: list[str] | None = None,
    trainer_keys: list[str] | None = None,
    require_pinned: bool = False,
    names: tuple[str, str] = ("--image-id", "--trainer-key"),
) -> Policy:
    """A policy file (or none) with the flags' additions, each checked (UsageError naming the
    flag, ``names``, and the value): the one way the CLI and the Prefect flows build a policy."""
    policy = load_policy(path) if path else Policy()
    return policy.with_flags(
        [image_id_arg(v, names[0]) for v in image_ids or []],
        [trainer_key_arg(v, names[1]) for v in trainer_keys or []],
        require_pinned,
    )


def load_policy(path: str | Path) -> Policy:
    """A ``--policy`` file (YAML or JSON). Raises UsageError naming the file and the key."""
    import yaml  # only here: verify without a policy file starts without it (bench/)

    p = Path(path)
    try:
        text = read_document(p, MAX_YAML_BYTES).decode("utf-8")
    except OSError as e:
        raise UsageError(f"{p}: cannot read the policy: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{p}: not UTF-8 text") from None
    except DocumentError as e:
        raise UsageError(f"{p}: {e}") from None
    try:
        data = load_yaml(text)
    except DocumentError as e:
        raise UsageError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        raise UsageError(f"{p}: not valid YAML: {str(e).splitlines()[0]}") from None
    return parse_policy(data, str(p))


def parse_policy(data: Any, source: str = "policy") -> Policy:
    """A policy from a mapping of its keys (a policy file's content); UsageError naming
    ``source`` and the key."""
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a policy is a mapping of keys, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(part) for part in err["loc"])
        more = f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        raise UsageError(f"{source}: {loc}: {msg}{more}") from None
