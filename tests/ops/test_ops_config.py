"""The operations keys of a job: spool, bwlimit, max_duration, request_rate, prune, max_delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer.config.loader import load_config, parse_duration
from transfer.config.settings import JobConfig
from transfer.errors import ConfigError

BASE = """
[clouds.src]
identity_url = "http://127.0.0.1:1/v2.0"
tenant_id = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
username = "u"
password_env = "PW"
[clouds.dst]
identity_url = "http://127.0.0.1:1/v2.0"
tenant_id = "0f9e8d7c6b5a49382716a5b4c3d2e1f0"
username = "u"
password_env = "PW"
[[jobs]]
name = "nightly"
source = { cloud = "src", region = "KR1" }
targets = [ { cloud = "dst", region = "KR2" } ]
"""


def load(tmp_path: Path, extra: str) -> JobConfig:
    path = tmp_path / "config.toml"
    path.write_text(BASE + extra)
    return load_config(path, environ={"PW": "secret"}).jobs["nightly"]


def test_operations_keys_are_read(tmp_path: Path) -> None:
    job = load(
        tmp_path,
        'spool = "always"\nspool_dir = "sp"\nbwlimit = "01:00,10M 07:00,off"\n'
        'max_duration = "1h30m"\nrequest_rate = 5\nprune = true\nmax_delete = 3\n',
    )
    assert job.spool == "always" and job.spool_dir == tmp_path / "sp"
    assert job.bwlimit is not None and job.bwlimit.entries == ((60, 10 << 20), (420, None))
    assert job.max_duration == 5400 and job.request_rate == 5.0
    assert job.prune is True and job.max_delete == 3


def test_defaults_are_off(tmp_path: Path) -> None:
    job = load(tmp_path, 'bwlimit = "off"\n')
    assert job.spool == "off" and job.bwlimit is None and job.max_duration is None
    assert job.prune is False and job.max_delete is None


def test_bad_operations_keys_are_all_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            tmp_path,
            'spool = "sometimes"\nbwlimit = "25:00,1M"\nmax_duration = "soon"\n'
            'request_rate = -1\nmax_delete = "ten"\n',
        )
    problems = "\n".join(caught.value.problems)
    assert "jobs[0].spool: expected one of off|auto|always" in problems
    assert "jobs[0].bwlimit: no such time of day" in problems
    assert 'jobs[0].max_duration: expected a duration like "6h"' in problems
    assert "jobs[0].request_rate: expected a positive number, got -1" in problems
    assert "jobs[0].max_delete: expected an integer of at least 0" in problems


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6h", 21600), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("3600", 3600), ("x", None)],
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds
