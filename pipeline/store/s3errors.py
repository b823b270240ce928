"""What an S3 failure says: one line naming the object and the cause (the endpoint that cannot be
reached, the credentials that are missing, the bucket that does not exist, the access denied, or
S3's own error code and message), for every boto failure the S3 store does not handle itself."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from veritrain.pipeline.errors import StorageError

DENIED_CODES = {
    "AccessDenied",
    "403",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
}


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def failure(where: str, e: Exception, doing: str, endpoint: str, bucket: str) -> StorageError:
    """StorageError "``where``: cause" for ``e``, raised while trying to ``doing`` (a verb:
    "read", "write", "list") at ``endpoint`` in ``bucket``."""
    if isinstance(e, NoCredentialsError | PartialCredentialsError):
        cause = (
            f"no usable S3 credentials ({one_line(e)}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        )
    elif isinstance(
        e, BotoConnectionError | HTTPClientError | ResponseStreamingError | IncompleteReadError
    ):
        cause = f"cannot reach the S3 endpoint {endpoint} ({one_line(e)})"
    elif isinstance(e, ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = one_line(e.response.get("Error", {}).get("Message", "") or e)
        if code == "NoSuchBucket":
            cause = f"no such bucket {bucket!r} at {endpoint}"
        elif code in DENIED_CODES or status == 403:
            cause = f"access denied by {endpoint} ({code}: {message})"
        else:
            cause = f"cannot {doing}: S3 error {code or status} ({message})"
    else:
        cause = f"cannot {doing} ({type(e).__name__}: {one_line(e)})"
    return StorageError(f"{where}: {cause}")
