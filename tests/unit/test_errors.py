"""The error tree: what each class allows is what the table in ``transfer.errors`` says."""

from __future__ import annotations

import inspect

import transfer.errors as errors
from transfer.errors import ApiError, TransferError, api_error_class

FLAGS = ("retryable", "unsent", "image_retryable", "fatal", "transient")
COLUMNS = ("retryable", "unsent", "image", "fatal", "transient")


def declared() -> dict[str, tuple[bool, ...]]:
    """The table of the module docstring: class name -> its flags."""
    doc = inspect.getdoc(errors) or ""
    lines = doc.split("=========================  =========")[2].splitlines()
    header = doc.split("=========================  =========")[1].splitlines()[1]
    columns = [header.index(name) for name in COLUMNS]
    table: dict[str, tuple[bool, ...]] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name = line.split()[0]
        table[name] = tuple(line[c : c + 3] == "yes" for c in columns)
    return table


def every_error_class() -> list[type[TransferError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, TransferError)
    ]


def test_the_docstring_table_is_what_the_classes_declare() -> None:
    table = declared()
    assert "TlsVerificationError" in table and len(table) >= 10
    for cls in every_error_class():
        flags = tuple(bool(getattr(cls, flag)) for flag in FLAGS)
        assert flags == table.get(cls.__name__, (False,) * len(FLAGS)), cls.__name__


def test_tls_failures_are_fatal_and_never_retried() -> None:
    tls = errors.TlsVerificationError("certificate not trusted")
    assert tls.fatal and not tls.retryable and not tls.image_retryable
    assert isinstance(tls, errors.TransportError)


def test_status_codes_map_to_their_classes() -> None:
    assert api_error_class(503) is errors.ServerError
    assert api_error_class(429) is errors.TooManyRequests
    assert api_error_class(418) is ApiError
    assert api_error_class(507) is errors.StorageFull  # not retried: the store is full
    assert not errors.StorageFull("full").retryable and not errors.StorageFull("full").transient
    busy = api_error_class(429)("slow down", method="GET", path="/v2/images", retry_after=2.0)
    assert str(busy) == "GET /v2/images: 429 slow down" and busy.retry_after == 2.0
