"""Malformed configurations through the real command line: one clear line, exit code 2.

Each case starts from a valid config and breaks one thing, the way an operator would by hand.
The command is ``plan`` (``run`` for its own flags), called as ``transfer.cli.main`` in this
process, and a few cases once more as ``python -m transfer`` child processes.  Every identity
URL points at a local server that refuses all credentials at once, so a config that is wrongly
accepted ends quickly in exit code 3 instead of reaching a real cloud.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.config_files import two_clouds_and_a_job, write_private
from transfer.cli.main import main

SRC_PASSWORD = "rel-src-Pw-5e1f0c"
DST_PASSWORD = "rel-dst-Pw-93ab77"
INLINE_PASSWORD = "rel-inline-Pw-d41c2a"
ENV = {"REL_SRC_PW": SRC_PASSWORD, "REL_DST_PW": DST_PASSWORD}
SECRETS = (SRC_PASSWORD, DST_PASSWORD, INLINE_PASSWORD)
PREFIX = "image-transfer: config error: config.toml: "


class _Refuse(BaseHTTPRequestHandler):
    """Answers every request with 401 (Keystone's "wrong credentials"), at once."""

    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"error": {"code": 401, "message": "refused by the test"}}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def identity() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2.0"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


BASE = (
    '[journal]\npath = "journal.db"\n\n[log]\nlevel = "warning"\n\n'
    + two_clouds_and_a_job(identity_url="IDENTITY", password_envs=("REL_SRC_PW", "REL_DST_PW"))
    + 'transfers = 4\n\n[jobs.select]\nstatus = "active"\n\n[jobs.copy]\ntags = true\n'
)

Edit = Callable[[str], str]


def replace(old: str, new: str) -> Edit:
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


def after(anchor: str, added: str) -> Edit:
    return replace(anchor, anchor + "\n" + added)


def append(added: str) -> Edit:
    return lambda text: text + "\n" + added + "\n"


def chain(*edits: Edit) -> Edit:
    def edit(text: str) -> str:
        for one in edits:
            text = one(text)
        return text

    return edit


@dataclass(frozen=True)
class Case:
    id: str
    edit: Edit
    expect: str  # a regex the one problem (after "config.toml: ") must match from its start
    env: Mapping[str, str | None] = field(default_factory=dict)
    files: Mapping[str, bytes | None] = field(default_factory=dict)  # None: a directory
    args: tuple[str, ...] = ()


SRC_ENV = 'password_env = "REL_SRC_PW"'
JOB_NAME = 'name = "copy"'

CASES = [
    # -- the file itself ------------------------------------------------------------------
    Case("toml syntax", after("[log]", "format = "), r"invalid TOML: .*line 5, column"),
    Case(
        "unknown top-level table",
        append('[jurnal]\npath = "x.db"'),
        r"jurnal: unknown key \(did you mean 'journal'\?\)",
    ),
    Case("jobs as one table", replace("[[jobs]]", "[jobs]"), r"jobs: expected an array of tables"),
    Case(
        "clouds not a table",
        lambda text: 'clouds = "src"\n\n' + text[: text.index("[clouds.src]")],
        r"clouds: expected a table of clouds, got 'src'$",
    ),
    # -- journal and log ------------------------------------------------------------------
    Case(
        "journal path a number",
        replace('path = "journal.db"', "path = 5"),
        r"journal\.path: expected a non-empty string, got 5$",
    ),
    Case(
        "journal path with a NUL",
        replace('path = "journal.db"', r'path = "jour\u0000nal.db"'),
        r"journal\.path: ",
    ),
    Case(
        "log level",
        replace('level = "warning"', 'level = "loud"'),
        r"log\.level: expected one of debug\|info\|warning\|error, got 'loud'$",
    ),
    Case(
        "log format",
        after('level = "warning"', 'format = "xml"'),
        r"log\.format: expected one of auto\|console\|json, got 'xml'$",
    ),
    # -- clouds ---------------------------------------------------------------------------
    Case(
        "misspelled cloud key",
        after(SRC_ENV, "insecur = true"),
        r"clouds\.src\.insecur: unknown key \(did you mean 'insecure'\?\)$",
    ),
    Case(
        "insecure a string",
        after(SRC_ENV, 'insecure = "no"'),
        r"clouds\.src\.insecure: expected true or false, got 'no'$",
    ),
    Case(
        "identity url not http",
        replace('identity_url = "IDENTITY"', 'identity_url = "ftp://id.example/v2.0"'),
        r"clouds\.src\.identity_url: expected an http\(s\) URL, got 'ftp://id\.example/v2\.0'$",
    ),
    Case(
        "tenant id a number",
        replace('tenant_id = "t-src"', "tenant_id = 42"),
        r"clouds\.src\.tenant_id: expected a non-empty string, got 42$",
    ),
    Case(
        "no tenant",
        replace('tenant_id = "t-src"\n', ""),
        r"clouds\.src: expected tenant_id or tenant_name, got neither$",
    ),
    Case(
        "no username, inline password",
        chain(
            replace('username = "op"\n', ""),
            replace(SRC_ENV, f'password = "{INLINE_PASSWORD}"'),
        ),
        r"clouds\.src\.username: expected a string \(the API user\), got none$",
    ),
    Case(
        "no credentials",
        replace(SRC_ENV + "\n", ""),
        r"clouds\.src: no credentials: expected password_env, password_file or password",
    ),
    Case(
        "password variable unset",
        lambda text: text,
        r"clouds\.src\.password_env: environment variable REL_SRC_PW is not set$",
        env={"REL_SRC_PW": None},
    ),
    Case(
        "password variable empty",
        lambda text: text,
        r"clouds\.src\.password_env: environment variable REL_SRC_PW is empty$",
        env={"REL_SRC_PW": ""},
    ),
    Case(
        "password variable name invalid",
        replace(SRC_ENV, 'password_env = "REL SRC PW"'),
        r"clouds\.src\.password_env: expected an environment variable name, got 'REL SRC PW'$",
    ),
    Case(
        "password file missing",
        replace(SRC_ENV, 'password_file = "secrets/src"'),
        r"clouds\.src\.password_file: cannot read .*secrets/src: No such file or directory$",
    ),
    Case(
        "password file unreadable (a directory)",
        replace(SRC_ENV, 'password_file = "secrets"'),
        r"clouds\.src\.password_file: cannot read .*secrets: Is a directory$",
        files={"secrets": None},
    ),
    Case(
        "password file not UTF-8",
        replace(SRC_ENV, 'password_file = "pw.bin"'),
        r"clouds\.src\.password_file: cannot read .*pw\.bin: not UTF-8 text$",
        files={"pw.bin": b"\xff\xfe\x00pw\n"},
    ),
    Case(
        "password file empty",
        replace(SRC_ENV, 'password_file = "pw.txt"'),
        r"clouds\.src\.password_file: .*pw\.txt is empty$",
        files={"pw.txt": b"\n"},
    ),
    Case(
        "password file name with a NUL",
        replace(SRC_ENV, r'password_file = "pw\u0000.txt"'),
        r"clouds\.src\.password_file: ",
    ),
    Case(
        "password a number",
        replace(SRC_ENV, "password = 123456789"),
        r"clouds\.src\.password: expected a non-empty string, got an integer$",
    ),
    Case(
        "password and token",
        after(SRC_ENV, 'token_env = "REL_DST_PW"\nendpoints = { KR1 = "http://127.0.0.1:9" }'),
        r"clouds\.src: expected either a password or a token, got both",
    ),
    Case(
        "token without endpoints",
        append('[clouds.spare]\ntenant_id = "t-spare"\ntoken_env = "REL_SRC_PW"'),
        r"clouds\.spare: token_env \(token mode\) needs \[clouds\.spare\.endpoints\]",
    ),
    Case(
        "token mode, region without an endpoint",
        replace(SRC_ENV, 'token_env = "REL_SRC_PW"\nendpoints = { KR2 = "http://127.0.0.1:9" }'),
        r"jobs\[0\]\.source\.region: cloud 'src' uses a token, so its endpoints need a KR1 entry",
    ),
    Case(
        "endpoint not a URL",
        after(SRC_ENV, 'endpoints = { KR1 = "kr1-api-image" }'),
        r"clouds\.src\.endpoints\.KR1: expected an http\(s\) URL, got 'kr1-api-image'$",
    ),
    Case(
        "endpoint region malformed",
        after(SRC_ENV, 'endpoints = { "KR 1" = "http://127.0.0.1:9" }'),
        r"clouds\.src\.endpoints\.'KR 1': expected a region name like KR1, got 'KR 1'$",
    ),
    Case(
        "CA bundle missing",
        after(SRC_ENV, 'ca_bundle = "corp-ca.pem"'),
        r"clouds\.src\.ca_bundle: expected a CA bundle file, got 'corp-ca\.pem'",
    ),
    Case(
        "cloud name malformed",
        chain(replace("[clouds.dst]", '[clouds."d s t"]'), replace('"dst"', '"d s t"')),
        r"clouds\.'d s t': expected a cloud name of letters",
    ),
    Case(
        "cloud not a table",
        append("[clouds]\nbackup = 5"),
        r"clouds\.backup: expected a table, got 5$",
    ),
    # -- jobs -----------------------------------------------------------------------------
    Case(
        "job names a missing cloud",
        replace('{ cloud = "dst", region = "KR2" }', '{ cloud = "dts", region = "KR2" }'),
        r"jobs\[0\]\.targets\[0\]\.cloud: no cloud named 'dts' \(did you mean 'dst'\?\) "
        r"\(defined: src, dst\)$",
    ),
    Case(
        "bad region",
        replace('region = "KR1"', 'region = "KR/1"'),
        r"jobs\[0\]\.source\.region: expected a region name like KR1, got 'KR/1'$",
    ),
    Case(
        "target is the source",
        replace('{ cloud = "dst", region = "KR2" }', '{ cloud = "src", region = "kr1" }'),
        r"jobs\[0\]\.targets\[0\]: expected a target other than the source, got src/KR1",
    ),
    Case(
        "target twice",
        replace(
            '{ cloud = "dst", region = "KR2" }',
            '{ cloud = "dst", region = "KR2" }, { cloud = "dst", region = "kr2" }',
        ),
        r"jobs\[0\]\.targets\[1\]: expected each target once, got dst/KR2 again$",
    ),
    Case(
        "no targets",
        replace('targets = [ { cloud = "dst", region = "KR2" } ]', "targets = []"),
        r"jobs\[0\]\.targets: expected at least one target "
        r"\(\{ cloud = NAME, region = REGION \}\), got none$",
    ),
    Case(
        "no source",
        replace('source = { cloud = "src", region = "KR1" }\n', ""),
        r"jobs\[0\]\.source: expected \{ cloud = NAME, region = REGION \}, got none$",
    ),
    Case(
        "source without region",
        replace('source = { cloud = "src", region = "KR1" }', 'source = { cloud = "src" }'),
        r"jobs\[0\]\.source\.region: expected a region name like KR1, got none$",
    ),
    Case(
        "job name malformed",
        replace(JOB_NAME, 'name = "copy all"'),
        r"jobs\[0\]\.name: expected letters, digits, .* got 'copy all'$",
    ),
    Case(
        "job name twice",
        lambda text: text + "\n" + text[text.index("[[jobs]]") :],
        r"jobs\[1\]\.name: expected a unique job name, got 'copy' again$",
    ),
    Case(
        "misspelled job key",
        after(JOB_NAME, "tranfers = 2"),
        r"jobs\[0\]\.tranfers: unknown key \(did you mean 'transfers'\?\)$",
    ),
    Case(
        "transfers a string",
        replace("transfers = 4", 'transfers = "4"'),
        r"jobs\[0\]\.transfers: expected an integer from 1 to 64, got '4'$",
    ),
    Case(
        "transfers zero",
        replace("transfers = 4", "transfers = 0"),
        r"jobs\[0\]\.transfers: expected an integer from 1 to 64, got 0$",
    ),
    Case(
        "checkers too many",
        after(JOB_NAME, "checkers = 1000"),
        r"jobs\[0\]\.checkers: expected an integer from 1 to 256, got 1000$",
    ),
    Case(
        "retries a float",
        after(JOB_NAME, "retries = 2.5"),
        r"jobs\[0\]\.retries: expected an integer from 1 to 100, got 2\.5$",
    ),
    Case(
        "backoff upside down",
        after(JOB_NAME, 'retry_backoff = "60s..2s"'),
        r'jobs\[0\]\.retry_backoff: expected "FIRST\.\.MAX" durations like "2s\.\.60s", FIRST at '
        r"most MAX, got '60s\.\.2s'$",
    ),
    Case(
        "backoff one number",
        after(JOB_NAME, "retry_backoff = 5"),
        r'jobs\[0\]\.retry_backoff: expected "FIRST\.\.MAX" durations .*, got 5$',
    ),
    Case(
        "settle never",
        after(JOB_NAME, 'settle_timeout = "0s"'),
        r'jobs\[0\]\.settle_timeout: expected a duration like "6h", "90m" or a number of '
        r"seconds, got '0s'$",
    ),
    Case(
        "verify mode",
        after(JOB_NAME, 'verify = "always"'),
        r"jobs\[0\]\.verify: expected one of auto\|full, got 'always'$",
    ),
    Case(
        "on_mismatch",
        after(JOB_NAME, 'on_mismatch = "keep"'),
        r"jobs\[0\]\.on_mismatch: expected one of delete\|quarantine, got 'keep'$",
    ),
    Case(
        "spool a boolean",
        after(JOB_NAME, "spool = true"),
        r"jobs\[0\]\.spool: expected a non-empty string, got true$",
    ),
    Case("bwlimit", after(JOB_NAME, 'bwlimit = "fast"'), r"jobs\[0\]\.bwlimit: .*'?fast'?"),
    Case(
        "bwlimit timetable",
        after(JOB_NAME, 'bwlimit = "25:00,10M"'),
        r"jobs\[0\]\.bwlimit: no such time of day in '25:00,10M'$",
    ),
    Case(
        "max_duration",
        after(JOB_NAME, 'max_duration = "forever"'),
        r"jobs\[0\]\.max_duration: expected a duration like \"6h\", .* got 'forever'$",
    ),
    Case(
        "request_rate negative",
        after(JOB_NAME, "request_rate = -1"),
        r"jobs\[0\]\.request_rate: expected a positive number, got -1$",
    ),
    Case(
        "max_delete negative",
        after(JOB_NAME, "max_delete = -1"),
        r"jobs\[0\]\.max_delete: expected an integer of at least 0, got -1$",
    ),
    Case(
        "prune a string",
        after(JOB_NAME, 'prune = "yes"'),
        r"jobs\[0\]\.prune: expected true or false, got 'yes'$",
    ),
    Case(
        "misspelled select key",
        after('status = "active"', 'visiblity = "private"'),
        r"jobs\[0\]\.select\.visiblity: unknown key \(did you mean 'visibility'\?\)$",
    ),
    Case(
        "select status",
        replace('status = "active"', 'status = "gone"'),
        r"jobs\[0\]\.select\.status: expected one of .*, got 'gone'$",
    ),
    Case(
        "select sizes reversed",
        after('status = "active"', "size_min = 10\nsize_max = 5"),
        r"jobs\[0\]\.select\.size_max: expected at least size_min \(10\), got 5$",
    ),
    Case(
        "select tags a number",
        after('status = "active"', "tags = 5"),
        r"jobs\[0\]\.select\.tags: expected an array of strings, got 5$",
    ),
    Case(
        "copy os type",
        after("tags = true", 'default_os_type = "bsd"'),
        r"jobs\[0\]\.copy\.default_os_type: expected one of linux\|windows, got 'bsd'$",
    ),
    Case(
        "share with a missing cloud",
        after("tags = true", 'share_with = ["partnr"]'),
        r"jobs\[0\]\.copy\.share_with\[0\]: no cloud named 'partnr' \(defined: src, dst\)$",
    ),
    Case(
        "member map not a table",
        after("tags = true", "member_map = 3"),
        r"jobs\[0\]\.copy\.member_map: expected a table of SOURCE_TENANT = TARGET_TENANT",
    ),
    # -- flags and job selection ------------------------------------------------------------
    Case(
        "unknown job on the command line",
        lambda text: text,
        r"no job named 'cpoy'",
        args=("--job", "cpoy"),
    ),
]


def prepare(case: Case, folder: Path, identity: str) -> Path:
    for name, content in case.files.items():
        if content is None:
            (folder / name).mkdir()
        else:
            write_private(folder / name, content)
    return write_private(folder / "config.toml", case.edit(BASE).replace("IDENTITY", identity))


def set_up(case: Case, folder: Path, identity: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``case``'s files and config in ``folder``, made the current directory, and its variables."""
    monkeypatch.chdir(folder)
    prepare(case, folder, identity)
    for name in ("REL_SRC_PW", "REL_DST_PW"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment(case).items():
        monkeypatch.setenv(name, value)


def environment(case: Case) -> dict[str, str]:
    env = dict(ENV)
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_main(argv: list[str]) -> int:
    """``main`` as the console script runs it; an escaping exception is a traceback."""
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own exit
        return exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # a user would see a traceback
        pytest.fail(f"uncaught {type(exc).__name__}: {exc}")


VALID = Case("valid", lambda text: text, "")


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES)


def test_the_unbroken_config_gets_past_the_loader(
    identity: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The control: the base config is valid, so each case's exit 2 is its own mistake's."""
    set_up(VALID, tmp_path, identity, monkeypatch)

    code = run_main(["plan", "-c", "config.toml"])

    out, err = capsys.readouterr()
    assert code == 3, (out, err)
    assert "config error" not in err
    assert "credentials for cloud 'src' were refused" in err
    for secret in SECRETS:
        assert secret not in out + err


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_malformed_config_is_one_line_naming_the_key_and_exit_code_2(
    case: Case,
    identity: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_up(case, tmp_path, identity, monkeypatch)

    code = run_main(["plan", "-c", "config.toml", *case.args])

    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    if case.args:
        assert line.startswith("image-transfer: config error: config.toml: "), line
        assert re.search(case.expect, line), line
    else:
        assert line.startswith(PREFIX), line
        assert re.match(case.expect, line[len(PREFIX) :]), line
    for secret in SECRETS:
        assert secret not in out + err
    # Stopped before any work: no journal was created.
    assert not (tmp_path / "journal.db").exists()


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (("--bwlimit", "fast"), r"^image-transfer: config error: --bwlimit: .*'?fast'?"),
        (("--max-duration", "soon"), r"^image-transfer: config error: --max-duration: .*'soon'"),
        (("--max-delete", "-1"), r"^image-transfer: config error: --max-delete: .*-1"),
        (("--max-delete", "many"), r"argument --max-delete: invalid int value: 'many'"),
    ],
    ids=["bwlimit", "max-duration", "max-delete", "max-delete-not-a-number"],
)
def test_bad_run_flags_are_one_clear_line_and_exit_code_2(
    args: tuple[str, ...],
    expect: str,
    identity: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_up(VALID, tmp_path, identity, monkeypatch)

    code = run_main(["run", "-c", "config.toml", "--no-progress", *args])

    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert re.search(expect, err.strip().splitlines()[-1]), err
    assert not (tmp_path / "journal.db").exists()


def test_the_real_console_entry_point_says_the_same(identity: str, tmp_path: Path) -> None:
    """A few cases as ``python -m transfer plan`` child processes (all at once)."""
    chosen = [
        c
        for c in CASES
        if c.id
        in (
            "misspelled cloud key",
            "password file unreadable (a directory)",
            "job names a missing cloud",
            "token mode, region without an endpoint",
            "toml syntax",
        )
    ]

    def one(case: Case) -> tuple[Case, subprocess.CompletedProcess[str]]:
        folder = tmp_path / re.sub(r"\W+", "-", case.id)
        folder.mkdir()
        prepare(case, folder, identity)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REL_")}
        env.update(environment(case))
        proc = subprocess.run(
            [sys.executable, "-m", "transfer", "plan", "-c", "config.toml"],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return case, proc

    with ThreadPoolExecutor(len(chosen)) as pool:
        results = list(pool.map(one, chosen))
    failures = []
    for case, proc in results:
        lines = proc.stderr.strip().splitlines()
        ok = (
            proc.returncode == 2
            and "Traceback" not in proc.stderr
            and len(lines) == 1
            and lines[0].startswith(PREFIX)
            and re.match(case.expect, lines[0][len(PREFIX) :]) is not None
        )
        if not ok:
            failures.append(f"{case.id}: exit {proc.returncode}: {proc.stderr[-600:]}")
    assert failures == []
