"""The S3 store: the same write-once key space as LocalStore, in ``s3://bucket[/prefix]``.

Semantics match LocalStore exactly: ``create`` is a conditional create (``If-None-Match: *``); when
the object already exists it is read back, and the same bytes count as success (a resumed run
re-creates what a crash left behind) while other bytes raise ConflictError. The endpoint comes from
the standard ``AWS_ENDPOINT_URL`` (boto3 reads it), credentials from boto3's standard chain.

Large objects (> 16 MiB) go by multipart upload whose CompleteMultipartUpload is itself conditional
(``If-None-Match: *``). AWS S3 supports that since 2024-08, and so do the two servers the
conformance suite runs against (moto server 5.x and s3s-fs), so no temporary-key-then-copy
fallback is needed: that fallback would itself need a conditional CopyObject, which is less widely
supported than the conditional complete. A server that rejects the conditional header gets a
StorageError that says so, rather than an unconditional write (one that silently ignores it
cannot be told apart from the client side).

Atomicity is the server's job: AWS S3 serializes conditional writes (a concurrent loser gets 412,
or 409 ConditionalRequestConflict while the winner is still in flight, which is retried here).
Not every S3 look-alike does: s3s-fs checks the condition, then stores the body and renames it over
the key, so racing creates all succeed (tests/test_store_conformance.py shows it). Exactly one
winner among concurrent writers needs a server whose conditional writes are atomic, as AWS S3's
are (moto passes the suite's race test too).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from veritrain.pipeline.errors import ConflictError, StorageError, UsageError
from veritrain.pipeline.store.base import NotFoundError, writing
from veritrain.pipeline.store.s3errors import failure, one_line
from veritrain.pipeline.store.uris import S3_SCHEME, check_store_uri

if TYPE_CHECKING:  # boto3-stubs: the S3 client's request and response types, for mypy only
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

# Objects above this size go by multipart upload, in parts of this size (S3's minimum part is
# 5 MiB; 16 MiB keeps a 1 GB checkpoint at ~64 parts, far below the 10 000-part limit).
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024

RETENTION_ENV = "VERITRAIN_S3_RETENTION_DAYS"

# "standard" retries throttling, 500/502/503/504 and connection errors with truncated exponential
# backoff, rand * scale * 2^i for i = 0..3 between 5 attempts, where botocore (1.44) scales by 1 s
# for throttling (at most 15 s in all: a throttled bucket gets ridden out) and by 50 ms otherwise
# (at most 0.75 s: an unreachable endpoint fails in about a second, not minutes).
# connect_timeout bounds a black-holed endpoint; read_timeout is per socket read, not per object.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=60,
    tcp_keepalive=True,
)

# S3's answers to a conditional create whose key exists: 412 when the existing object is there,
# 409 when another conditional write to the key is still in flight (AWS asks callers to retry).
_EXISTS_CODES = {"PreconditionFailed", "412"}
_IN_FLIGHT_CODES = {"ConditionalRequestConflict", "409"}
_MISSING_KEY_CODES = {"NoSuchKey", "404", "NotFound"}
# Servers without the Object Lock API answer these; such a bucket simply has no lock.
_NO_LOCK_CODES = {
    "ObjectLockConfigurationNotFoundError",
    "NotImplemented",
    "501",
    "MethodNotAllowed",
    "405",
}
_ChecksumField = Literal[
    "ChecksumCRC32",
    "ChecksumCRC32C",
    "ChecksumSHA1",
    "ChecksumSHA256",
    "ChecksumCRC64NVME",
]
_CHECKSUM_FIELDS: tuple[_ChecksumField, ...] = get_args(_ChecksumField)


class _Exists(Exception):
    """The conditional create found the key taken (412) or contended (409)."""

    def __init__(self, in_flight: bool):
        self.in_flight = in_flight


class S3Store:
    """``s3://bucket[/prefix]``; keys live under the prefix. Thread-safe (boto3 clients are)."""

    def __init__(self, uri: str, client: Any = None):
        if not uri.startswith(S3_SCHEME):
            raise UsageError(f"store {uri!r}: an S3 store URI looks like s3://bucket[/prefix]")
        check_store_uri(uri, "store")
        bucket, _, prefix = uri.removeprefix(S3_SCHEME).strip("/").partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        try:
            # A session of its own: boto3's default session is not thread-safe to create clients
            # from, and the flow may open stores from several threads.
            self._s3 = client or boto3.session.Session().client("s3", config=_CONFIG)
        except (BotoCoreError, ValueError) as e:
            raise StorageError(f"{self.uri}: cannot set up the S3 client ({one_line(e)})") from None
        self._lock_checked = False
        self._locked = False
        self._lock_mutex = threading.Lock()

    # -- keys and errors ---------------------------------------------------------------------

    def _object(self, key: str) -> str:
        if not key or key.startswith("/") or key.endswith("/") or ".." in key.split("/"):
            raise StorageError(f"{self.uri}: bad object key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _obj_uri(self, obj: str) -> str:
        return f"s3://{self.bucket}/{obj}"

    def _error(self, where: str, e: Exception, doing: str) -> StorageError:
        """One line naming the object and the cause (``s3errors.py``), for any boto failure that
        is not a precondition or a missing key."""
        return failure(where, e, doing, self._s3.meta.endpoint_url, self.bucket)

    @staticmethod
    def _code(e: ClientError) -> str:
        return str(e.response.get("Error", {}).get("Code", ""))

    # -- Object Lock -------------------------------------------------------------------------

    def _lock_args(self, where: str) -> dict[str, Any]:
        """Retention for a new object: COMPLIANCE for N days where the bucket has Object Lock.
        Whether it has is asked once per store, on the first write (readers never need it)."""
        with self._lock_mutex:
            if not self._lock_checked:
                self._locked = self._bucket_has_object_lock(where)
                self._lock_checked = True
        if not self._locked:
            return {}
        raw = os.environ.get(RETENTION_ENV, "1")
        try:
            days = int(raw)
            if days < 1:
                raise ValueError
        except ValueError:
            raise StorageError(
                f"{self.uri}: {RETENTION_ENV}={raw!r} is not a whole number of days >= 1"
            ) from None
        until = datetime.now(UTC) + timedelta(days=days)
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    def _bucket_has_object_lock(self, where: str) -> bool:
        try:
            conf = self._s3.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as e:
            status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            if self._code(e) in _NO_LOCK_CODES or status in _NO_LOCK_CODES:
                return False
            raise self._error(where, e, "read the bucket's Object Lock configuration") from None
        except BotoCoreError as e:
            raise self._error(where, e, "read the bucket's Object Lock configuration") from None
        return conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def _ensure_retention(self, obj: str, head: Mapping[str, Any], lock: dict[str, Any]) -> None:
        """Puts the retention on an object that lacks it. AWS applies the Object Lock headers of
        CreateMultipartUpload to the completed object, but moto drops them (checked with moto
        5.2), and a crash between an upload and this call leaves an object without retention
        that an idempotent re-create must still lock; on AWS this is a no-op HEAD check."""
        if not lock or head.get("ObjectLockMode"):
            return
        version = {"VersionId": head["VersionId"]} if head.get("VersionId") else {}
        self._s3.put_object_retention(
            Bucket=self.bucket,
            Key=obj,
            **version,
            Retention={
                "Mode": lock["ObjectLockMode"],
                "RetainUntilDate": lock["ObjectLockRetainUntilDate"],
            },
        )

    # -- the Store protocol ------------------------------------------------------------------

    def create(self, key: str, data: bytes) -> None:
        obj = self._object(key)
        with writing():
            self._create(obj, bytes(data))

    def _create(self, obj: str, data: bytes) -> None:
        where = self._obj_uri(obj)
        lock = self._lock_args(where)
        for attempt in range(6):
            try:
                try:
                    if len(data) > MULTIPART_THRESHOLD:
                        self._put_multipart(obj, data, lock)
                        if lock:
                            self._ensure_retention(obj, self._head(obj) or {}, lock)
                    else:
                        self._put(obj, data, lock)
                    return
                except _Exists as taken:
                    in_flight = taken.in_flight
                existing, head = self._existing(obj, data)
                if existing:
                    self._ensure_retention(obj, head, lock)
            except ClientError as e:
                if self._code(e) in {"NotImplemented", "501"}:
                    raise StorageError(
                        f"{where}: the S3 endpoint {self._s3.meta.endpoint_url} does not support "
                        f"conditional writes (If-None-Match: *), which veritrain needs "
                        f"({one_line(e)})"
                    ) from None
                raise self._error(where, e, "write") from None
            except BotoCoreError as e:
                raise self._error(where, e, "write") from None
            if existing is True:
                return
            if existing is False:
                raise ConflictError(f"{where}: already exists with other content")
            # Not readable yet: a 409 while another writer's create is in flight (it may still
            # fail), so try again after a short wait. (A 412 for a key that then reads as missing
            # cannot happen with write-once keys; retrying is safe there as well.)
            if attempt == 5:
                state = "in flight" if in_flight else "unreadable"
                raise StorageError(
                    f"{where}: a concurrent create of this object stayed {state}; retry later"
                )
            time.sleep(0.1 * 2**attempt)

    def _raise_if_taken(self, e: ClientError) -> None:
        code = self._code(e)
        status = str(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
        if code in _EXISTS_CODES or status in _EXISTS_CODES:
            raise _Exists(in_flight=False) from None
        if code in _IN_FLIGHT_CODES or status in _IN_FLIGHT_CODES:
            raise _Exists(in_flight=True) from None

    def _put(self, obj: str, data: bytes, lock: dict[str, Any]) -> None:
        try:
            self._s3.put_object(Bucket=self.bucket, Key=obj, Body=data, IfNoneMatch="*", **lock)
        except ClientError as e:
            self._raise_if_taken(e)
            raise

    def _put_multipart(self, obj: str, data: bytes, lock: dict[str, Any]) -> None:
        # CRC32 per part, named explicitly at creation so every server sees a consistent upload
        # (AWS also requires a checksum or Content-MD5 on Object Lock writes).
        upload = self._s3.create_multipart_upload(
            Bucket=self.bucket, Key=obj, ChecksumAlgorithm="CRC32", **lock
        )
        upload_id = upload["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            for number, offset in enumerate(range(0, len(data), PART_SIZE), start=1):
                r = self._s3.upload_part(
                    Bucket=self.bucket,
                    Key=obj,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data[offset : offset + PART_SIZE],
                    ChecksumAlgorithm="CRC32",
                )
                part: CompletedPartTypeDef = {"PartNumber": number, "ETag": r["ETag"]}
                for f in _CHECKSUM_FIELDS:
                    if r.get(f):
                        part[f] = r[f]
                parts.append(part)
            try:
                self._s3.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=obj,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    IfNoneMatch="*",
                )
            except ClientError as e:
                self._raise_if_taken(e)
                raise
        except BaseException:
            # Parts of an unfinished upload are billed until aborted; a failed abort (the
            # endpoint is gone) is left to the bucket's lifecycle rule for incomplete uploads.
            try:
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=obj, UploadId=upload_id)
            except (BotoCoreError, ClientError):
                pass
            raise

    def _head(self, obj: str) -> Mapping[str, Any] | None:
        try:
            return self._s3.head_object(Bucket=self.bucket, Key=obj)
        except ClientError as e:
            if self._code(e) in _MISSING_KEY_CODES:
                return None
            raise

    def _existing(self, obj: str, data: bytes) -> tuple[bool | None, Mapping[str, Any]]:
        """Whether the object at ``obj`` holds ``data`` (None: there is no such object), and
        its HEAD."""
        head = self._head(obj)
        if head is None:
            return None, {}
        if head.get("ContentLength") != len(data):
            return False, head  # no need to download a large object that cannot match
        try:
            return self._get(obj)[0] == data, head
        except NotFoundError:
            return None, {}

    def _get(self, obj: str, **cond: Any) -> tuple[bytes, Mapping[str, Any]]:
        """GET (``cond``: get_object's Range, IfMatch) with the body read, and the answer; a body
        cut off mid-stream is fetched again (botocore retries the request, not the stream)."""
        for attempt in range(3):
            try:
                resp = self._s3.get_object(Bucket=self.bucket, Key=obj, **cond)
            except ClientError as e:
                if self._code(e) in _MISSING_KEY_CODES:
                    raise NotFoundError(f"{self._obj_uri(obj)}: no such object") from None
                raise
            try:
                # StreamingBody.read checks the length against Content-Length.
                return resp["Body"].read(), resp
            except (ResponseStreamingError, IncompleteReadError, BotoConnectionError):
                if attempt == 2:
                    raise
                time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def read(self, key: str) -> bytes:
        obj = self._object(key)
        try:
            return self._get(obj)[0]
        except (BotoCoreError, ClientError) as e:
            raise self._error(self._obj_uri(obj), e, "read") from None

    def read_range(self, key: str, start: int, stop: int, etag: str = "") -> tuple[bytes, int, str]:
        """Bytes ``start .. stop - 1`` of an object (fewer past its end), the object's size and
        ETag, by one ranged GET (a sharded dataset reads large shards in parts). With ``etag``,
        only of that version of the object: ConflictError if it was replaced since."""
        obj = self._object(key)
        cond: dict[str, Any] = {"Range": f"bytes={start}-{stop - 1}"}
        cond.update({"IfMatch": etag} if etag else {})
        try:
            body, resp = self._get(obj, **cond)
        except ClientError as e:
            if self._code(e) == "InvalidRange":  # an empty object has no byte to range over
                return b"", 0, etag
            if etag and self._code(e) in _EXISTS_CODES:  # 412: not that ETag any more
                raise ConflictError(f"{self._obj_uri(obj)}: replaced while it was read") from None
            raise self._error(self._obj_uri(obj), e, "read") from None
        except BotoCoreError as e:
            raise self._error(self._obj_uri(obj), e, "read") from None
        span, tag = resp.get("ContentRange", ""), resp.get("ETag", "")
        if not span:  # a server that ignores Range sends the whole object
            return body[start:stop], len(body), tag
        return body, int(span.rpartition("/")[2]), tag

    def exists(self, key: str) -> bool:
        obj = self._object(key)
        try:
            return self._head(obj) is not None
        except (BotoCoreError, ClientError) as e:
            raise self._error(self._obj_uri(obj), e, "stat") from None

    def server_time(self, key: str) -> float | None:
        """The object's LastModified, which the server sets; None if there is no such object."""
        obj = self._object(key)
        try:
            head = self._head(obj)
        except (BotoCoreError, ClientError) as e:
            raise self._error(self._obj_uri(obj), e, "stat") from None
        return None if head is None else head["LastModified"].timestamp()

    def probe(self) -> None:
        # One LIST of at most one key: it needs the endpoint, the credentials and the bucket,
        # and (unlike HeadBucket, whose 404 has no error code) names which one failed.
        where = self._obj_uri(f"{self.prefix}/" if self.prefix else "")
        try:
            self._s3.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
        except (BotoCoreError, ClientError) as e:
            raise self._error(where, e, "list") from None

    def list(self, prefix: str) -> list[str]:
        return sorted(self.listing(prefix))

    def listing(self, prefix: str) -> dict[str, tuple[str, int]]:
        """The objects under ``prefix`` (a folder: "runs/a" lists runs/a/... and not runs/ab/...,
        as LocalStore) by key, each with its ETag and size, from the same LIST."""
        prefix = prefix.strip("/")
        if ".." in prefix.split("/"):
            raise StorageError(f"{self.uri}: bad object key {prefix!r}")
        base = "/".join(p for p in (self.prefix, prefix) if p)
        full = f"{base}/" if base else ""
        cut = len(self.prefix) + 1 if self.prefix else 0
        found = {}
        try:
            pages = self._s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/"):  # folder markers made by consoles
                        found[item["Key"][cut:]] = (item.get("ETag", ""), item.get("Size", 0))
        except (BotoCoreError, ClientError) as e:
            raise self._error(self._obj_uri(full), e, "list") from None
        return found
