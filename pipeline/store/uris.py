"""The rules for naming a store and a run, once, for every command.

A store is a local folder or ``s3://bucket[/prefix]``; any other ``scheme://`` is refused rather
than read as a relative path. A run URI is ``<store>/runs/<run_id>``; the run id rule is the
core's (``prover.check_run_id``). Breaking a rule is a UsageError naming the flag or argument.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from veritrain import prover
from veritrain.pipeline.errors import UsageError
from veritrain.pipeline.store.keys import RUNS, run_prefix

if TYPE_CHECKING:
    from veritrain.pipeline.store.base import Store


S3_SCHEME = "s3://"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# AWS's rule for new buckets is stricter (3-63 of [a-z0-9.-]); older buckets and other S3 servers
# allow capitals and underscores, so the syntax check only refuses what no server accepts.
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
STORE_URI_FORM = "a local folder or s3://bucket[/prefix]"


def store_uri_problem(uri: str) -> str | None:
    """What is wrong with a store URI, or None: the store-URI rule, in one place."""
    if not uri:
        return f"empty; a store is {STORE_URI_FORM}"
    if "\0" in uri:
        return "contains a NUL character"
    if uri.startswith(S3_SCHEME):
        bucket, _, prefix = uri.removeprefix(S3_SCHEME).rstrip("/").partition("/")
        if not bucket:
            return "no bucket name; an S3 store is s3://bucket[/prefix]"
        if not _BUCKET.match(bucket):
            return (
                f"bucket name {bucket!r} is not 1-255 of [A-Za-z0-9._-] starting with a "
                "letter or digit"
            )
        if prefix and any(seg in ("", ".", "..") for seg in prefix.split("/")):
            return "the prefix after the bucket has an empty, '.' or '..' segment"
        return None
    scheme = _SCHEME.match(uri)
    if scheme:
        return f"unsupported URI scheme {scheme.group(1)}://; a store is {STORE_URI_FORM}"
    return None


def check_store_uri(uri: str, source: str) -> str:
    """Returns ``uri`` or raises UsageError naming ``source`` (a flag, or a spec file and key)."""
    problem = store_uri_problem(uri)
    if problem:
        raise UsageError(f"{source} {uri!r}: {problem}")
    return uri


def run_id_problem(run_id: str) -> str | None:
    """What is wrong with a run id, or None: the core's rule, which every record, claim and
    store key (``runs/<run_id>/``) relies on."""
    try:
        prover.check_run_id(run_id)
    except ValueError as e:
        return str(e)
    return None


def check_run_id(run_id: str, source: str = "--run-id") -> str:
    """Returns ``run_id`` or raises UsageError naming ``source``."""
    problem = run_id_problem(run_id)
    if problem:
        raise UsageError(f"{source} {run_id!r}: {problem}")
    return run_id


def split_run_uri(uri: str, source: str = "run URI") -> tuple[str, str]:
    """``<store>/runs/<run_id>`` -> (store URI, run id), both checked; UsageError names
    ``source``."""
    path = uri.rstrip("/")
    head, sep, run_id = path.rpartition(f"/{RUNS}/")
    if not sep and path.startswith(f"{RUNS}/"):
        head, sep, run_id = ".", f"/{RUNS}/", path.removeprefix(f"{RUNS}/")
    if not sep or "/" in run_id:
        raise UsageError(f"{source} {uri!r}: a run URI looks like <store>/runs/<run_id>")
    head = head or "/"  # /runs/<id>: a store at the root folder
    problem = store_uri_problem(head) or run_id_problem(run_id)
    if problem:
        raise UsageError(f"{source} {uri!r}: {problem}")
    return head, run_id


def object_uri(store: Store, key: str) -> str:
    """Where an object is, for people: a path in a local store, s3://... otherwise."""
    return f"{store.uri.rstrip('/')}/{key}"


def run_uri(store: Store, run_id: str) -> str:
    return object_uri(store, run_prefix(run_id))
