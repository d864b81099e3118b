"""The error tree: what each class allows is what the table in ``transfer.errors`` says."""

from __future__ import annotations

import inspect

import transfer.errors as errors
from transfer.errors import ApiError, TransferError, api_error_class

FLAGS = ("retryable", "unsent", "image_retryable", "fatal")


def declared() -> dict[str, tuple[bool, bool, bool, bool]]:
    """The table of the module docstring: class name -> its four flags."""
    doc = inspect.getdoc(errors) or ""
    lines = doc.split("=========================  =========")[2].splitlines()
    header = doc.split("=========================  =========")[1].splitlines()[1]
    columns = [header.index(name) for name in ("retryable", "unsent", "image", "fatal")]
    table: dict[str, tuple[bool, bool, bool, bool]] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        name = line.split()[0]
        marks = tuple(line[c : c + 3] == "yes" for c in columns)
        table[name] = (marks[0], marks[1], marks[2], marks[3])
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
        assert flags == table.get(cls.__name__, (False, False, False, False)), cls.__name__


def test_tls_failures_are_fatal_and_never_retried() -> None:
    tls = errors.TlsVerificationError("certificate not trusted")
    assert tls.fatal and not tls.retryable and not tls.image_retryable
    assert isinstance(tls, errors.TransportError)


def test_status_codes_map_to_their_classes() -> None:
    assert api_error_class(503) is errors.ServerError
    assert api_error_class(429) is errors.TooManyRequests
    assert api_error_class(418) is ApiError
    busy = api_error_class(429)("slow down", method="GET", path="/v2/images", retry_after=2.0)
    assert str(busy) == "GET /v2/images: 429 slow down" and busy.retry_after == 2.0
