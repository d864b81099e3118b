"""The config loader: what a user sees for good and bad files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.config_files import two_clouds_and_a_job, write_private
from tests.unit.factories import image
from transfer.config.loader import load_config, load_credentials
from transfer.config.settings import (
    Config,
    LogFormat,
    LogLevel,
    MismatchAction,
    SelectConfig,
    SpoolMode,
    VerifyMode,
)
from transfer.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
ENV = {
    "SRC_API_PASSWORD": "src-secret-1",
    "DST_API_PASSWORD": "dst-secret-2",
    "PARTNER_API_PASSWORD": "partner-secret-3",
    "HOME": "/home/op",
}

MINIMAL = two_clouds_and_a_job(
    password_envs=("SRC_API_PASSWORD", "DST_API_PASSWORD"), source_region="kr1"
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(text: str, name: str = "config.toml") -> Path:
    return write_private(Path(name), text)


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(text), environ=ENV if environ is None else environ)
    return info.value.problems


def test_example_config_loads_with_its_variables(tmp_path: Path) -> None:
    example = write_private(
        tmp_path / "config.example.toml", (REPO / "config.example.toml").read_text()
    )
    config = load_config(example, environ=ENV)
    assert config.warnings == ()
    assert config.journal.path == tmp_path / "image-transfer.db"
    assert set(config.clouds) == {"src", "dst", "partner"}
    src = config.clouds["src"]
    assert src.password is not None and src.password.reveal() == "src-secret-1"
    assert src.endpoints == {"KR1": "https://kr1-api-image-infrastructure.nhncloudservice.com"}
    job = config.job("kr1-to-kr2")
    assert job.source.key == "src/KR1"
    assert [t.key for t in job.targets] == ["dst/KR2"]
    assert (job.transfers, job.checkers, job.retries) == (4, 8, 3)
    assert (job.verify, job.on_mismatch) == ("auto", "delete")
    # Cloud names in share_with and member_map are resolved to those clouds' tenant ids.
    assert job.copy.share_with == ("a1b2c3d4e5f60718293a4b5c6d7e8f90",)
    assert job.copy.member_map["c289b99209ca4e189095cdecebbd092d"] == (
        "0f9e8d7c6b5a49382716051f2e3d4c5b"
    )
    assert job.select.names == ("golden-*",)
    assert config.cloud_for_tenant("a1b2c3d4e5f60718293a4b5c6d7e8f90") is config.clouds["partner"]


def test_defaults_and_normalised_regions(workdir: Path) -> None:
    config = load_config(write(MINIMAL), environ={**ENV, "XDG_STATE_HOME": "/var/state"})
    job = config.jobs["copy"]
    assert job.source.key == "src/KR1"
    assert job.select.status == "active"
    assert job.copy.default_os_type == "linux"
    assert config.log.level == "info" and config.log.format == "auto"
    assert config.journal.path == Path("/var/state/image-transfer/journal.db")
    home_default = load_config(write(MINIMAL), environ=ENV)
    assert home_default.journal.path == Path("/home/op/.local/state/image-transfer/journal.db")


def test_modes_are_enum_members_equal_to_their_strings(workdir: Path) -> None:
    defaults = load_config(write(MINIMAL), environ=ENV)
    job = defaults.jobs["copy"]
    assert job.verify is VerifyMode.AUTO and job.on_mismatch is MismatchAction.DELETE
    assert job.spool is SpoolMode.OFF
    assert defaults.log.level is LogLevel.INFO and defaults.log.format is LogFormat.AUTO
    text = MINIMAL.replace(
        'name = "copy"',
        'name = "copy"\nverify = "FULL"\non_mismatch = "Quarantine"\nspool = "always"',
    )
    text += '\n[log]\nlevel = "DEBUG"\nformat = "json"\n'
    config = load_config(write(text), environ=ENV)
    job = config.jobs["copy"]
    assert job.verify is VerifyMode.FULL and job.on_mismatch is MismatchAction.QUARANTINE
    assert job.spool is SpoolMode.ALWAYS
    assert config.log.level is LogLevel.DEBUG and config.log.format is LogFormat.JSON
    # Each is its string: code that compares a mode with "off", prints or dumps it is unchanged.
    spool: str = job.spool
    assert spool == "always" and spool != "off"
    assert f"{job.verify}" == "full" and json.dumps([job.on_mismatch]) == '["quarantine"]'


def test_every_problem_is_reported_at_once(workdir: Path) -> None:
    text = MINIMAL.replace('name = "copy"', 'name = "copy"\ntransfers = "four"\ntranfers = 3')
    text += '\n[log]\nlevel = "loud"\n'
    found = problems(text)
    assert found == [
        "config.toml: log.level: expected one of debug|info|warning|error, got 'loud'",
        "config.toml: jobs[0].tranfers: unknown key (did you mean 'transfers'?)",
        "config.toml: jobs[0].transfers: expected an integer from 1 to 64, got 'four'",
    ]


def test_out_of_range_and_wrong_types(workdir: Path) -> None:
    text = MINIMAL.replace(
        'name = "copy"',
        'name = "copy"\ncheckers = 0\nretries = 101\nverify = "sometimes"\non_mismatch = true',
    )
    text += "[jobs.copy]\ntags = 1\nexclude_properties = [1]\n"
    found = problems(text)
    assert "config.toml: jobs[0].checkers: expected an integer from 1 to 256, got 0" in found
    assert "config.toml: jobs[0].retries: expected an integer from 1 to 100, got 101" in found
    assert "config.toml: jobs[0].verify: expected one of auto|full, got 'sometimes'" in found
    assert "config.toml: jobs[0].on_mismatch: expected a non-empty string, got true" in found
    assert "config.toml: jobs[0].copy.tags: expected true or false, got 1" in found
    assert (
        "config.toml: jobs[0].copy.exclude_properties[0]: expected a non-empty string, got 1"
        in found
    )


def test_toml_syntax_error_names_line_and_column(workdir: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write('[log]\nlevel = "info"\nformat = \n'), environ=ENV)
    message = str(info.value)
    assert message.startswith("config.toml: invalid TOML: ")
    assert "line 3" in message and "column" in message


def test_missing_file(workdir: Path) -> None:
    with pytest.raises(ConfigError, match=r"^nope\.toml: file not found$"):
        load_config(Path("nope.toml"), environ=ENV)


def test_job_naming_a_missing_cloud_lists_the_defined_ones(workdir: Path) -> None:
    found = problems(MINIMAL.replace('{ cloud = "dst"', '{ cloud = "dts"'))
    assert found == [
        "config.toml: jobs[0].targets[0].cloud: no cloud named 'dts' (did you mean 'dst'?) "
        "(defined: src, dst)"
    ]


def test_duplicate_job_names_and_missing_targets(workdir: Path) -> None:
    job = MINIMAL[MINIMAL.index("[[jobs]]") :]
    text = MINIMAL + job + '[[jobs]]\nname = "lonely"\nsource = { cloud = "src", region = "KR1" }\n'
    found = problems(text)
    assert "config.toml: jobs[1].name: expected a unique job name, got 'copy' again" in found
    assert any(p.startswith("config.toml: jobs[2].targets: expected an array") for p in found)


def test_credentials_problems(workdir: Path) -> None:
    text = """
[clouds.none]
tenant_id = "t1"
username = "op"

[clouds.both]
tenant_id = "t2"
username = "op"
password_env = "SRC_API_PASSWORD"
password_file = "pw.txt"

[clouds.tok]
token_env = "TOKEN"

[clouds.nouser]
tenant_id = "t4"
password_env = "SRC_API_PASSWORD"
"""
    found = problems(text)
    assert found == [
        "config.toml: clouds.none: no credentials: expected password_env, password_file or "
        "password (or application_credential_secret_env/_file with application_credential_id, "
        "or token_env/token_file with endpoints)",
        "config.toml: clouds.both: expected only one of password_env, password_file, got 2",
        "config.toml: clouds.tok: token_env (token mode) needs [clouds.tok.endpoints]: "
        "a pre-issued token comes without a service catalog",
        "config.toml: clouds.nouser.username: expected a string (the API user), got none",
    ]


def test_regions_and_source_equal_to_target(workdir: Path) -> None:
    text = MINIMAL.replace('region = "KR2"', 'region = "KR 2"')
    text += '\n[[jobs]]\nname = "self"\nsource = { cloud = "src", region = "KR1" }\n'
    text += 'targets = [ { cloud = "dst", region = "KR2" }, { cloud = "src", region = "kr1" } ]\n'
    text += '\n[clouds.src.endpoints]\n"K/1" = "https://x.example"\n'
    found = problems(text)
    assert found == [
        "config.toml: clouds.src.endpoints.'K/1': expected a region name like KR1, got 'K/1'",
        "config.toml: jobs[0].targets[0].region: expected a region name like KR1, got 'KR 2'",
        "config.toml: jobs[1].targets[1]: expected a target other than the source, got src/KR1 "
        "(the same tenant and region as src/KR1)",
    ]


def test_secrets_are_resolved_and_never_shown(workdir: Path) -> None:
    Path("pw.txt").write_text("file-secret\n")
    Path("pw.txt").chmod(0o600)
    Path("token.txt").write_text("tok-secret\r\n")
    Path("token.txt").chmod(0o644)
    text = """
[clouds.env]
tenant_id = "t1"
username = "op"
password_env = "SRC_API_PASSWORD"

[clouds.file]
tenant_name = "proj"
username = "op"
password_file = "pw.txt"

[clouds.inline]
tenant_id = "t3"
username = "op"
password = "inline-secret"
insecure = true

[clouds.tok]
token_file = "token.txt"
endpoints = { KR1 = "http://127.0.0.1:8080/" }
"""
    path = write(text)
    path.chmod(0o644)
    config = load_config(path, environ=ENV)
    clouds = config.clouds
    assert clouds["env"].password is not None
    assert clouds["env"].password.reveal() == "src-secret-1"
    assert clouds["file"].password is not None
    assert clouds["file"].password.reveal() == "file-secret"  # one trailing newline stripped
    assert clouds["inline"].password is not None
    assert clouds["inline"].password.reveal() == "inline-secret"
    assert clouds["inline"].verify_tls is False
    assert clouds["tok"].token is not None and clouds["tok"].token.reveal() == "tok-secret"
    assert clouds["tok"].endpoints == {"KR1": "http://127.0.0.1:8080"}
    assert config.warnings == (
        "config.toml: clouds.inline.insecure: TLS certificate verification is disabled",
        "config.toml: clouds.inline.password: a plain password in the config file; prefer "
        "password_env or password_file",
        "config.toml: clouds.inline.password: the config file holds a password and is readable "
        "by other users (chmod 600 it)",
        f"config.toml: clouds.tok.token_file: {workdir / 'token.txt'} is readable by other "
        "users (chmod 600 it)",
    )
    shown = repr(config) + str(config) + "".join(config.warnings)
    for secret in ("src-secret-1", "file-secret", "inline-secret", "tok-secret"):
        assert secret not in shown


def test_secret_problems_name_the_key_but_not_the_value(workdir: Path) -> None:
    text = """
[clouds.a]
tenant_id = "t1"
username = "op"
password_env = "MISSING_VAR"

[clouds.b]
tenant_id = "t2"
username = "op"
password_file = "no-such-file"

[clouds.c]
tenant_id = "t3"
username = "op"
password = 123456789
"""
    found = problems(text)
    assert found == [
        "config.toml: clouds.a.password_env: environment variable MISSING_VAR is not set",
        f"config.toml: clouds.b.password_file: cannot read {Path.cwd() / 'no-such-file'}: "
        "No such file or directory",
        "config.toml: clouds.c.password: expected a non-empty string, got an integer",
    ]
    assert not any("123456789" in p for p in found)


def test_share_with_and_member_map_resolution_errors(workdir: Path) -> None:
    text = (
        MINIMAL
        + """
[jobs.copy]
share_with = ["dst", "nowhere"]

[jobs.copy.member_map]
"aaaa" = "tok"

[clouds.tok]
token_env = "SRC_API_PASSWORD"
endpoints = { KR1 = "https://img.example" }
"""
    )
    found = problems(text)
    assert found == [
        "config.toml: jobs[0].copy.share_with[1]: no cloud named 'nowhere' "
        "(defined: src, dst, tok)",
        "config.toml: jobs[0].copy.member_map.aaaa: cloud 'tok' has no tenant_id to name its "
        "tenant by",
    ]


def test_unknown_top_level_and_cloud_keys(workdir: Path) -> None:
    text = MINIMAL.replace('username = "op"', 'usernme = "op"', 1) + "\n[jounral]\npath = 'x'\n"
    found = problems(text)
    assert "config.toml: jounral: unknown key (did you mean 'journal'?)" in found
    assert "config.toml: clouds.src.usernme: unknown key (did you mean 'username'?)" in found


def test_load_credentials_ignores_other_clouds_and_jobs(workdir: Path) -> None:
    text = MINIMAL.replace('name = "copy"', 'name = "copy"\ntransfers = 0')
    path = write(text)
    creds = load_credentials(path, "src", environ={"SRC_API_PASSWORD": "only-this"})
    assert creds.name == "src" and creds.tenant_id == "t-src"
    assert creds.password is not None and creds.password.reveal() == "only-this"
    with pytest.raises(ConfigError) as info:
        load_credentials(path, "sr", environ=ENV)
    assert info.value.problems == [
        "config.toml: clouds: no cloud named 'sr' (did you mean 'src'?) (defined: src, dst)"
    ]


def test_unknown_job_lookup(workdir: Path) -> None:
    config: Config = load_config(write(MINIMAL), environ=ENV)
    with pytest.raises(ConfigError, match=r"no job named 'cpy' \(did you mean 'copy'\?\)"):
        config.job("cpy")


def test_select_filters_and_matching() -> None:
    select = SelectConfig(
        visibility=None,
        size_min=10,
        tags=("golden",),
        names=("web-*", "db-?"),
        exclude_names=("*-old",),
        exclude_ids=("x9",),
    )
    assert select.api_filters() == {"status": "active", "size_min": 10, "tag": ["golden"]}
    one_name = SelectConfig(names=("exact",), member_status="accepted")
    assert one_name.api_filters() == {
        "status": "active",
        "member_status": "accepted",
        "name": "exact",
    }

    def pick(**kwargs: object) -> bool:
        defaults: dict[str, object] = {"name": "web-1", "data": b"x" * 20, "tags": ("golden",)}
        defaults.update(kwargs)
        return select.matches(image("i1", **defaults))  # type: ignore[arg-type]

    assert pick()
    assert pick(name="db-2")
    assert not pick(name="Web-1")  # globs are case-sensitive
    assert not pick(name="web-1-old")
    assert not pick(data=b"short")
    assert not pick(tags=())
    assert not pick(status="queued")
    assert not pick(visibility="public")  # the provider's images only when asked for
    assert not select.matches(image("x9", name="web-1", data=b"x" * 20, tags=("golden",)))
    assert SelectConfig(ids=("p1",)).matches(image("p1", visibility="public"))
    assert SelectConfig(visibility="public").matches(image("p2", visibility="public"))


def test_config_file_permissions_warning_only_with_a_password(workdir: Path) -> None:
    path = write(MINIMAL)
    os.chmod(path, 0o644)
    assert load_config(path, environ=ENV).warnings == ()


def test_a_postgresql_journal_url_with_its_password_from_the_environment(workdir: Path) -> None:
    url = "postgresql://image_transfer@db.example.com:5432/jobs"
    text = f'[journal]\nurl = "{url}"\npassword_env = "JOURNAL_DB_PASSWORD"\n' + MINIMAL
    environ = {**ENV, "JOURNAL_DB_PASSWORD": "db-secret-4"}
    config = load_config(write(text), environ=environ)
    assert config.journal.url == url
    assert config.journal.password is not None
    assert config.journal.password.reveal() == "db-secret-4"
    # Local state (spool, locks) keeps its default place beside where the SQLite file would be.
    assert config.journal.path == Path("/home/op/.local/state/image-transfer/journal.db")
    assert "db-secret-4" not in repr(config) + str(config)
    # ``status`` leaves the clouds' secrets unread, but reading the journal needs this one.
    status_view = load_config(write(text), environ=environ, resolve_secrets=False)
    assert status_view.journal.password == config.journal.password
    # Without password_env, libpq finds the password itself (~/.pgpass, PGPASSWORD).
    bare = load_config(write(f'[journal]\nurl = "{url}"\n' + MINIMAL), environ=ENV)
    assert (bare.journal.url, bare.journal.password) == (url, None)
    sqlite = load_config(write(MINIMAL), environ=ENV)
    assert (sqlite.journal.url, sqlite.journal.password) == (None, None)


def test_postgresql_journal_problems(workdir: Path) -> None:
    both = '[journal]\npath = "j.db"\nurl = "postgresql://op@db/jobs"\n' + MINIMAL
    assert problems(both) == [
        "config.toml: journal: expected either path (an SQLite file) or url (a PostgreSQL "
        "database), got both"
    ]
    wrong_scheme = '[journal]\nurl = "mysql://op@db/jobs"\n' + MINIMAL
    assert problems(wrong_scheme) == [
        "config.toml: journal.url: expected a postgresql://USER@HOST:PORT/DATABASE URL, "
        "got 'mysql://op@db/jobs'"
    ]
    not_a_string = "[journal]\nurl = 5432\n" + MINIMAL
    assert problems(not_a_string) == [
        "config.toml: journal.url: expected a postgresql://USER@HOST:PORT/DATABASE URL, got 5432"
    ]
    unset = '[journal]\nurl = "postgresql://op@db/jobs"\npassword_env = "NOPE"\n' + MINIMAL
    assert problems(unset) == [
        "config.toml: journal.password_env: environment variable NOPE is not set"
    ]
    bad_name = '[journal]\nurl = "postgres://op@db/jobs"\npassword_env = "1-x"\n' + MINIMAL
    assert problems(bad_name) == [
        "config.toml: journal.password_env: expected an environment variable name, got '1-x'"
    ]
    orphan = '[journal]\npassword_env = "JOURNAL_DB_PASSWORD"\n' + MINIMAL
    assert problems(orphan) == [
        "config.toml: journal.password_env: expected only with url (the password of a "
        "PostgreSQL journal), got no url"
    ]
    typo = '[journal]\nuri = "postgresql://op@db/jobs"\n' + MINIMAL
    assert problems(typo) == ["config.toml: journal.uri: unknown key (did you mean 'url'?)"]


def test_a_password_inside_the_journal_url_is_refused_and_never_echoed(workdir: Path) -> None:
    for url in (
        "postgresql://op:db-secret-5@db/jobs",
        "postgresql://op@db/jobs?sslmode=require&password=db-secret-5",
        "mysql://op:db-secret-5@db/jobs",
    ):
        found = problems(f'[journal]\nurl = "{url}"\n' + MINIMAL)
        assert len(found) == 1 and found[0].startswith("config.toml: journal.url: expected a")
        assert "password" in found[0] and "db-secret-5" not in found[0]


def test_an_empty_targets_array_asks_for_at_least_one_target(workdir: Path) -> None:
    text = re.sub(r"targets = \[.*\]", "targets = []", MINIMAL)
    assert problems(text) == [
        "config.toml: jobs[0].targets: expected at least one target "
        "({ cloud = NAME, region = REGION }), got none"
    ]
