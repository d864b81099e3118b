"""Pieces of the client that need no server: backoff, header parsing, flags to credentials."""

from __future__ import annotations

import argparse
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from transfer.cli.images import configure, credentials_from_args, region_from_args
from transfer.cloud.client import _content_md5, _content_range
from transfer.cloud.retry import RetryPolicy, RetryState, exhausted
from transfer.cloud.transport import _parse_retry_after, _server_message
from transfer.config.settings import HttpSettings
from transfer.errors import ConfigError, ProtocolError, ServerError, TransportError


def test_backoff_grows_with_full_jitter_and_stops_at_the_attempt_budget() -> None:
    state = RetryState(RetryPolicy(attempts=4, base=1.0, cap=3.0, total=100.0), random.Random(1))
    error = TransportError("GET /v2/images: reset")
    delays = [state.next_delay(error) for _ in range(4)]
    assert delays[3] is None  # 4 attempts = 3 waits
    ceilings = [1.0, 2.0, 3.0]  # base * 2**n, capped
    for delay, ceiling in zip(delays[:3], ceilings, strict=True):
        assert delay is not None and 0.0 <= delay <= ceiling
    assert state.attempt == 4


def test_retry_after_is_honoured_but_capped() -> None:
    state = RetryState(RetryPolicy(attempts=5, base=0.01, cap=2.0, total=100.0))
    slow = ServerError("busy", status=503, retry_after=1.5)
    delay = state.next_delay(slow)
    assert delay is not None and delay >= 1.5
    huge = ServerError("busy", status=503, retry_after=3600)
    delay = state.next_delay(huge)
    assert delay is not None and delay <= 2.0


def test_total_time_budget_stops_retries() -> None:
    state = RetryState(RetryPolicy(attempts=100, base=0.0, cap=10.0, total=1.0))
    assert state.next_delay(ServerError("x", status=500, retry_after=5.0)) is None


def test_exhausted_error_keeps_its_class_and_says_how_long_it_tried() -> None:
    state = RetryState(RetryPolicy(attempts=3))
    state.attempt = 3
    error = exhausted(
        ServerError("Service Unavailable", status=503, method="GET", path="/v2/x"), state
    )
    assert isinstance(error, ServerError)
    assert error.status == 503
    assert "GET /v2/x: 503 Service Unavailable (gave up after 3 attempts" in str(error)


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert _parse_retry_after("2") == 2.0
    assert _parse_retry_after("0.5") == 0.5
    assert _parse_retry_after("-3") == 0.0
    assert _parse_retry_after(None) is None
    assert _parse_retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    parsed = _parse_retry_after(later)
    assert parsed is not None and 25 <= parsed <= 31


def test_server_message_reads_json_nested_json_html_and_text() -> None:
    assert _server_message(b'{"message": "no  such\\n image"}', 404, "Not Found") == "no such image"
    keystone = b'{"error": {"message": "The request requires authentication.", "code": 401}}'
    assert _server_message(keystone, 401, "Unauthorized") == "The request requires authentication."
    html = b"<html><body><h1>404 Not Found</h1>The resource could not be found.</body></html>"
    assert _server_message(html, 404, "Not Found") == "The resource could not be found."
    assert _server_message(b"", 503, "Service Unavailable") == "Service Unavailable"
    long = _server_message(b"x" * 1000, 500, "Internal Server Error")
    assert len(long) == 300


def test_server_message_keeps_only_the_words_of_glance_webob_bodies() -> None:
    """Glance 33's error pages, as the emulator copies them: markup inside a JSON message,
    HTML-escaped quotes, and the status line in both the title and the heading."""
    page = (
        b"<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n"
        b"  <h1>404 Not Found</h1>\n  No image found with ID abc.<br /><br />\n\n\n"
        b" </body>\n</html>"
    )
    assert _server_message(page, 404, "Not Found") == "No image found with ID abc."
    flat = (
        b'{"message": "Member m is already a member.<br /><br />\\n\\n\\n", "code": "409 Conflict"}'
    )
    assert _server_message(flat, 409, "Conflict") == "Member m is already a member."
    plain = b"409 Conflict\n\nImage status transition from &#x27;active&#x27; is not allowed\n\n"
    assert _server_message(plain, 409, "Conflict") == (
        "Image status transition from 'active' is not allowed"
    )


def test_content_md5_accepts_hex_and_base64_and_normalises_to_hex() -> None:
    hex_md5 = "9E107D9D372BB6826BD81D3542A419D6"
    assert _content_md5(hex_md5, "GET /x") == hex_md5.lower()
    assert _content_md5("nhB9nTcrtoJr2B01QqQZ1g==", "GET /x") == hex_md5.lower()
    assert _content_md5(None, "GET /x") is None
    with pytest.raises(ProtocolError, match="Content-MD5"):
        _content_md5("not-an-md5", "GET /x")


def test_content_range_parsing() -> None:
    assert _content_range("bytes 10-99/100", "w") == (10, 99, 100)
    assert _content_range("bytes 0-9/*", "w") == (0, 9, None)
    with pytest.raises(ProtocolError, match="Content-Range"):
        _content_range("items 1-2/3", "w")


def test_http_settings_reject_nonsense_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match="'attempts' must be positive"):
        HttpSettings(attempts=0)
    with pytest.raises(ConfigError, match="'backoff_cap' must not be negative"):
        HttpSettings(backoff_cap=-1)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure(parser)
    return parser.parse_args(argv)


def test_flags_win_over_environment_and_may_follow_the_subcommand() -> None:
    env = {
        "OS_AUTH_URL": "http://env-identity/v2.0",
        "OS_TENANT_ID": "env-tenant",
        "OS_USERNAME": "env-user",
        "OS_PASSWORD": "env-password",
        "OS_REGION_NAME": "KR2",
        "MY_PASSWORD": "flag-password",
    }
    args = _parse(["--tenant-id", "flag-tenant", "list", "--password-env", "MY_PASSWORD"])
    creds = credentials_from_args(args, env)
    assert creds.tenant_id == "flag-tenant"
    assert creds.identity_url == "http://env-identity/v2.0"
    assert creds.username == "env-user"
    assert creds.password is not None and creds.password.reveal() == "flag-password"
    assert region_from_args(args, env) == "KR2"
    args = _parse(["list", "--region", "jp1"])
    assert region_from_args(args, env) == "jp1"
    assert "flag-password" not in repr(creds) and "env-password" not in repr(creds)


def test_token_mode_from_environment_needs_an_endpoint() -> None:
    env = {"OS_AUTH_TOKEN": "tok", "OS_REGION_NAME": "KR1"}
    with pytest.raises(ConfigError, match="--endpoint KR1=URL"):
        credentials_from_args(_parse(["list"]), env)
    creds = credentials_from_args(_parse(["list"]), {**env, "OS_IMAGE_URL": "http://img:1"})
    assert creds.uses_token and creds.endpoints == {"KR1": "http://img:1"}
    creds = credentials_from_args(_parse(["--endpoint", "kr1=http://other:2", "list"]), env)
    assert creds.endpoints == {"KR1": "http://other:2"}


def test_missing_or_conflicting_credentials_are_usage_errors() -> None:
    with pytest.raises(ConfigError, match="no credentials"):
        credentials_from_args(_parse(["list"]), {})
    with pytest.raises(ConfigError, match="not set"):
        credentials_from_args(_parse(["list", "--password-env", "NOPE"]), {})
    with pytest.raises(ConfigError, match="either a password or --token-env"):
        credentials_from_args(
            _parse(["list", "--password-env", "A", "--token-env", "B"]), {"A": "a", "B": "b"}
        )
    with pytest.raises(ConfigError, match="no region"):
        region_from_args(_parse(["list"]), {})
    with pytest.raises(ConfigError, match="REGION=URL"):
        credentials_from_args(_parse(["list", "--token-env", "T", "--endpoint", "KR1"]), {"T": "t"})


def test_password_file_is_read_without_its_newline(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret\n")
    args = _parse(
        ["list", "--password-file", str(secret_file), "--username", "u", "--tenant-id", "t"]
    )
    creds = credentials_from_args(args, {})
    assert creds.password is not None and creds.password.reveal() == "s3cret"
