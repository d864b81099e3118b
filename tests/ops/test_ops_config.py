"""The operations keys of a job: spool, bwlimit, max_duration, request_rate, prune, max_delete;
and the host's spool reserve (``IMAGE_TRANSFER_SPOOL_RESERVE``), which matters once a job spools."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config_files import two_clouds_and_a_job, write_private
from transfer.config.loader import load_config, parse_duration
from transfer.config.settings import (
    DEFAULT_SPOOL_RESERVE,
    SPOOL_RESERVE_ENV,
    JobConfig,
    SpoolMode,
)
from transfer.errors import ConfigError

BASE = two_clouds_and_a_job(
    password_envs=("PW", "PW"),
    tenant_ids=("a1b2c3d4e5f60718293a4b5c6d7e8f90", "0f9e8d7c6b5a49382716a5b4c3d2e1f0"),
    username="u",
    identity_url="http://127.0.0.1:1/v2.0",
    job="nightly",
)
ENV = {"PW": "secret"}
RESERVE_PROBLEM = (
    "IMAGE_TRANSFER_SPOOL_RESERVE: expected a size like 500M (units K, M, G, T, P; "
    "1024-based), got 'lots'"
)


def write(tmp_path: Path, extra: str) -> Path:
    return write_private(tmp_path / "config.toml", BASE + extra)


def load(tmp_path: Path, extra: str) -> JobConfig:
    return load_config(write(tmp_path, extra), environ=ENV).jobs["nightly"]


def test_operations_keys_are_read(tmp_path: Path) -> None:
    job = load(
        tmp_path,
        'spool = "always"\nspool_dir = "sp"\nbwlimit = "01:00,10M 07:00,off"\n'
        'max_duration = "1h30m"\nrequest_rate = 5\nprune = true\nmax_delete = 3\n',
    )
    assert job.spool is SpoolMode.ALWAYS and job.spool_dir == tmp_path / "sp"
    assert job.bwlimit is not None and job.bwlimit.entries == ((60, 10 << 20), (420, None))
    assert job.max_duration == 5400 and job.request_rate == 5.0
    assert job.prune is True and job.max_delete == 3


def test_defaults_are_off(tmp_path: Path) -> None:
    job = load(tmp_path, 'bwlimit = "off"\n')
    assert job.spool is SpoolMode.OFF and job.bwlimit is None and job.max_duration is None
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


def test_the_spool_reserve_comes_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'spool = "auto"\n')
    assert SPOOL_RESERVE_ENV == "IMAGE_TRANSFER_SPOOL_RESERVE"
    assert load_config(path, environ=ENV).spool_reserve == DEFAULT_SPOOL_RESERVE == 512 << 20
    for text, size in (("2G", 2 << 30), ("1.5k", 1536), ("0", 0), ("  ", DEFAULT_SPOOL_RESERVE)):
        config = load_config(path, environ={**ENV, SPOOL_RESERVE_ENV: text})
        assert config.spool_reserve == size, text


def test_a_bad_spool_reserve_is_a_problem_when_a_job_spools(tmp_path: Path) -> None:
    environ = {**ENV, SPOOL_RESERVE_ENV: "lots"}
    for mode in ("auto", "always"):
        with pytest.raises(ConfigError) as caught:
            load_config(write(tmp_path, f'spool = "{mode}"\n'), environ=environ)
        # Not a key of the file: the problem names the variable alone.
        assert caught.value.problems == [RESERVE_PROBLEM]
    # Reported with the file's own problems, all at once, even those of the spooling job.
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, 'spool = "always"\ntransfers = 0\n'), environ=environ)
    assert caught.value.problems == [
        f"{tmp_path / 'config.toml'}: jobs[0].transfers: expected an integer from 1 to 64, got 0",
        RESERVE_PROBLEM,
    ]


def test_a_bad_spool_reserve_is_ignored_when_no_job_spools(tmp_path: Path) -> None:
    environ = {**ENV, SPOOL_RESERVE_ENV: "lots"}
    for extra in ("", 'spool = "off"\n'):
        config = load_config(write(tmp_path, extra), environ=environ)
        assert config.jobs["nightly"].spool is SpoolMode.OFF
        assert config.spool_reserve == DEFAULT_SPOOL_RESERVE


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("6h", 21600), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("3600", 3600), ("x", None)],
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds
