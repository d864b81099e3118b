"""The project's error tree, and the one place where retryability is declared.

::

    TransferError                   every error this project raises on purpose
    ├── ConfigError                 a bad config file, flag or environment (usage error, exit 2)
    ├── AuthError                   the identity service refused the credentials
    ├── CatalogError                no image endpoint for the asked region
    ├── ApiError                    the Image API answered with an HTTP error status
    │   ├── BadRequest              400
    │   ├── Unauthorized            401 (the client re-issues the token once before raising it)
    │   ├── Forbidden               403 (protected image, download not allowed, not owner, ...)
    │   ├── NotFound                404
    │   ├── Conflict                409 (wrong status for the call, duplicate id or member, ...)
    │   ├── RequestTooLarge         413 (quota, storage full, size cap)
    │   ├── StorageFull             507 (the store is full)
    │   ├── UnsupportedMediaType    415
    │   ├── RangeNotSatisfiable     416
    │   ├── TooManyRequests         429
    │   └── ServerError             5xx
    ├── TransportError              connection reset, body cut off, a failure mid-request
    │   ├── RequestTimeout          connect or read timeout
    │   ├── ConnectError            the connection could not be opened: nothing was sent
    │   │   └── ConnectTimeout      (also a RequestTimeout)
    │   └── TlsVerificationError    the server's certificate is not trusted
    ├── ProtocolError               the server answered something that is not the API
    │                               (invalid JSON, missing fields, a foreign `next` link, ...)
    ├── IntegrityError              bytes received differ from what the source declared
    ├── ImageLookupError            no image, or several, answer to the name a command was given
    ├── Unsettled                   a target stayed saving/uploading/importing past the wait
    ├── SpoolError                  the local spool cannot hold an image (disk space, permissions)
    ├── JournalError                the journal cannot be opened, read or written
    ├── LeaseLost                   another worker took over what this one was working on
    ├── JobLocked                   another live run holds the job
    └── TooManyDeletions            a prune would delete more than ``max_delete``

What each error allows is declared on its class, here and nowhere else:

=========================  =========  ======  =====  =====  =========
class                      retryable  unsent  image  fatal  transient
=========================  =========  ======  =====  =====  =========
ConfigError                                          yes
AuthError                                            yes
CatalogError                                         yes
Unauthorized                                  yes
TooManyRequests            yes        yes     yes           yes
ServerError                yes                yes           yes
TransportError             yes                yes           yes
RequestTimeout             yes                yes           yes
ConnectError               yes        yes     yes           yes
ConnectTimeout             yes        yes     yes           yes
TlsVerificationError                                 yes
IntegrityError                                yes
Unsettled                  yes                yes           yes
JobLocked                                            yes
=========================  =========  ======  =====  =====  =========

Every other class allows none of these.  Two exception classes are not errors but signals to
the pipeline: ``TargetDiscarded`` (a step deleted or quarantined a target that could not become
a good copy, so the item starts again under a new generation) and ``TargetSettled`` (a target
Glance held in a transitional status was waited out, so the data steps run again).

- ``retryable``: repeating the same request may succeed (the client retries it with backoff);
- ``unsent``: the server cannot have acted on the request, so even a call that is not
  idempotent (a create without a chosen id, a streamed upload) may be sent again;
- ``image`` (``image_retryable``): another attempt at the whole image may succeed where this one
  failed: a retryable error, bytes that did not match (the next attempt reads them again), or a
  401 on a streamed upload (the client renewed the token but could not send the consumed body
  again; a token the identity service refuses to renew is an ``AuthError``);
- ``fatal``: the error stops the whole run, not just one image;
- ``transient``: the cause passes by itself (a network error, a timeout, a 5xx, a 429): an image
  that failed only with these is worth running again later (exit code 4).  Bytes that did not
  match, a full store or quota (413, ``StorageFull``) are not transient: they need a person.

Messages never contain a token or a password: the client builds them from the method, the URL
path (never the query of a request that could carry secrets) and the server's own message.
"""

from __future__ import annotations

from typing import ClassVar


class TransferError(Exception):
    """Root of every error this project raises on purpose."""

    retryable: ClassVar[bool] = False
    unsent: ClassVar[bool] = False
    image_retryable: ClassVar[bool] = False
    fatal: ClassVar[bool] = False
    transient: ClassVar[bool] = False


class ConfigError(TransferError):
    """A configuration problem: the message names the file, the key and what was expected."""

    fatal = True

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        self.problems = problems if problems is not None else [message]
        super().__init__(message)


class AuthError(TransferError):
    """The identity service refused the credentials, or its answer was unusable."""

    fatal = True


class CatalogError(TransferError):
    """The service catalog has no image endpoint for the asked region."""

    fatal = True


class ApiError(TransferError):
    """The Image API answered with an HTTP error status."""

    status: int = 0

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        method: str = "",
        path: str = "",
        retry_after: float | None = None,
    ) -> None:
        if status is not None:
            self.status = status
        self.method = method
        self.path = path
        self.server_message = message
        self.retry_after = retry_after
        where = f"{method} {path}: " if method else ""
        super().__init__(f"{where}{self.status} {message}".rstrip())


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401
    image_retryable = True


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class RequestTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class RangeNotSatisfiable(ApiError):
    status = 416


class TooManyRequests(ApiError):
    status = 429
    retryable = True
    unsent = True
    image_retryable = True
    transient = True


class ServerError(ApiError):
    status = 500
    retryable = True
    image_retryable = True
    transient = True


class StorageFull(ApiError):
    """507 Insufficient Storage: the target's store is full; no repeat helps until someone
    makes room (not a ``ServerError``, so it is not retried)."""

    status = 507


class TransportError(TransferError):
    """The connection failed: reset, closed, or a body cut off mid-way."""

    retryable = True
    image_retryable = True
    transient = True


class RequestTimeout(TransportError):
    """A connect or read timeout."""


class ConnectError(TransportError):
    """The connection could not be opened (refused, DNS, connect timeout): nothing was sent."""

    unsent = True


class ConnectTimeout(ConnectError, RequestTimeout):
    """The TCP or TLS connect did not finish in time: nothing was sent."""


class TlsVerificationError(TransportError):
    """The server's certificate could not be verified: repeating cannot help, and it may be
    an interception, so it stops the run."""

    retryable = False
    image_retryable = False
    transient = False
    fatal = True


class ProtocolError(TransferError):
    """The server answered something that is not the Image API."""


class IntegrityError(TransferError):
    """Bytes received differ from what was declared (size or checksum)."""

    image_retryable = True


class ImageLookupError(TransferError):
    """No image has the id or name a command was given, or several images have that name."""


class Unsettled(TransferError):
    """Glance kept a target in a transitional status (saving, uploading, importing) for
    longer than the job's ``settle_timeout``: it usually leaves it by itself, so this passes."""

    retryable = True
    image_retryable = True
    transient = True


class JournalError(TransferError):
    """The journal cannot be opened, read or written (the message names it and says why)."""


class LeaseLost(TransferError):
    """This worker no longer holds what it was working under (another took it over)."""


class JobLocked(TransferError):
    """Another live run holds the job."""

    fatal = True


class TooManyDeletions(TransferError):
    """A prune would delete more than ``max_delete``: nothing was deleted."""


class SpoolError(TransferError):
    """The spool directory cannot take an image: too little free disk space, or an OS error.

    Not retryable: waiting a few seconds frees no disk; a later run may find the space."""


_BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        RequestTooLarge,
        UnsupportedMediaType,
        RangeNotSatisfiable,
        TooManyRequests,
    )
}


def api_error_class(status: int) -> type[ApiError]:
    """The error class for an HTTP error status (5xx -> ServerError, unknown 4xx -> ApiError)."""
    if status == StorageFull.status:
        return StorageFull
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


class TargetSettled(Exception):
    """Not an error: the pipeline's signal that a target in a transitional status (saving,
    uploading, importing) was waited out, so the data steps run again from its settled status
    (``transfer.engine.steps``), without counting an attempt.  Never leaves the pipeline."""


class TargetDiscarded(Exception):
    """Not an error: the pipeline's signal that a target was discarded and the item starts
    again under a new generation (``transfer.engine.steps``).  Never leaves the pipeline."""


def only_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What a task group raised, as its task raised it: the group's first project error (or
    ``KeyboardInterrupt``) when it holds nothing else, else the group itself."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    if leaves and all(isinstance(e, TransferError | KeyboardInterrupt) for e in leaves):
        return leaves[0]
    return group
