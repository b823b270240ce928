"""The one loader of the YAML and JSON documents veritrain reads (a spec, a policy, determinism
profiles, run.json, ledger entries, attestations, fraud proofs, ...), with size and depth limits,
so that no document can make a parser recurse past Python's stack, or read or grow without end.

The depth is checked before anything recurses: a JSON text is scanned for its brackets first
(``json`` itself recurses, and so does what reads its result); a YAML text is composed by a loader
that stops at the limit (PyYAML's composer recurses once per level). A YAML document is limited
as it expands, too: an alias repeats the node it names without repeating its bytes, so aliases of
aliases can make a small text an enormous document, or one inside the node it names a document
that contains itself, which nothing downstream can serialize.

Every refusal is a ``DocumentError``, a ``ValueError`` like the parsers' own, so each caller treats
a document past a limit as it treats a malformed one (a spec is exit 2, a stored object that is too
deep is tampered with); its message says which limit, for the caller to prefix with the file.
"""

from __future__ import annotations

import functools
import json
import re
from itertools import accumulate
from pathlib import Path
from typing import Any

# What people write (a spec, a policy) is a few KiB nested a few levels; PyYAML (pure Python)
# reads 1 MiB of YAML in about 10 s on a busy 2-core machine.
MAX_YAML_BYTES = 2**20
MAX_YAML_DEPTH = 32
# What veritrain writes: the largest are an audit's audit.json (a key per object of the epoch and
# the whole ledger) and the verifier's receipt sightings, about 100 bytes an entry. The deepest is
# an attestation's statement, which holds the spec 4 levels down: a spec within MAX_YAML_DEPTH
# stays well within MAX_JSON_DEPTH wherever it is written.
MAX_JSON_BYTES = 16 * 2**20
MAX_JSON_DEPTH = 64

# A JSON string (brackets inside one are not structure), and what is not a bracket.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class DocumentError(ValueError):
    """A document past a limit: larger than its size limit or expanding past it (YAML aliases),
    nested too deep, or containing itself."""


def read_document(path: str | Path, max_bytes: int) -> bytes:
    """A file's bytes, reading no more than one past ``max_bytes`` (OSError as ``read_bytes``)."""
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    _check_size(data, max_bytes)
    return data


def load_json(data: bytes | str, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """``json.loads`` within the limits; DocumentError past them, ValueError if not JSON."""
    _check_size(data, max_bytes)
    if isinstance(data, bytes):  # as json.loads decodes it
        data = data.decode(json.detect_encoding(data), "surrogatepass")
    # The parser's depth anywhere in the text is its brackets' running sum there (all in C: a
    # text of brackets at the size limit takes about 2 s).
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", data))
    if max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0) > MAX_JSON_DEPTH:
        raise DocumentError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(data)


def load_yaml(data: bytes | str, max_bytes: int = MAX_YAML_BYTES) -> Any:
    """``yaml.safe_load`` within the limits (the document as it expands too); DocumentError past
    them, yaml.YAMLError if not YAML."""
    _check_size(data, max_bytes)
    loader = _limited_loader()(data, max_bytes)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _check_size(data: bytes | str, max_bytes: int) -> None:
    size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise DocumentError(f"larger than {max_bytes} bytes")


@functools.cache
def _limited_loader() -> type:
    """PyYAML's safe loader, composing no deeper than MAX_YAML_DEPTH, no alias inside the node it
    names, and expanding to no more than ``max_bytes`` (below). Made on first use: verify without
    a YAML file never imports yaml (bench/)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def __init__(self, stream: str | bytes, max_bytes: int) -> None:
            super().__init__(stream)
            self.max_bytes = max_bytes
            # A byte a node and a scalar's bytes so far (at least what the document takes as
            # JSON), an alias counted as the node it repeats.
            self.expanded = 0
            self.anchor_sizes: dict[str, int] = {}
            # The anchor of each collection being composed (None if it has none): the depth.
            self.open_collections: list[str | None] = []

        def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                if event.anchor in self.open_collections:
                    raise DocumentError(f"the alias *{event.anchor} is inside the node it names")
                self._grow(self.anchor_sizes.get(event.anchor or "", 0))
                return super().compose_node(parent, index)
            start = self.expanded
            if isinstance(event, yaml.ScalarEvent):
                self._grow(1 + len(event.value))
                node = super().compose_node(parent, index)
            else:
                self._grow(1)
                if len(self.open_collections) == MAX_YAML_DEPTH:
                    raise DocumentError(f"nested deeper than {MAX_YAML_DEPTH} levels")
                self.open_collections.append(event.anchor)
                try:
                    node = super().compose_node(parent, index)
                finally:
                    self.open_collections.pop()
            if event.anchor is not None:
                self.anchor_sizes[event.anchor] = self.expanded - start
            return node

        def _grow(self, size: int) -> None:
            self.expanded += size
            if self.expanded > self.max_bytes:
                raise DocumentError(f"expands to more than {self.max_bytes} bytes")

    return Loader
