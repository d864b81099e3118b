"""Where the page may listen and how its token guards it, as a user meets them: bad options
are one clear line and exit 2 before anything listens (or any cloud is called); behind a token,
no answer without it (401), none with a wrong one (403), and a browser's first visit with
``?token=`` trades it for a cookie that never holds the token itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.engine.helpers import cli, start_cli
from tests.web.helpers import announced, get, safe_answer_problems, stop

TOKEN = "f3c1d2e4b5a6978899aabbccddeeff00"
# A cloud on a port nothing listens on: a command that got as far as calling it would fail
# with another message and exit code.
CONFIG = """[journal]
path = "journal.db"

[clouds.src]
identity_url = "http://127.0.0.1:9/v2.0"
tenant_id = "t"
username = "u"
password_env = "WEB_TEST_PASSWORD"

[[jobs]]
name = "move"
source = { cloud = "src", region = "KR1" }
targets = [ { cloud = "src", region = "KR2" } ]
"""


def write_files(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    return config, token


async def test_bad_listen_addresses_and_token_files_are_refused_before_anything_listens(
    tmp_path: Path,
) -> None:
    config, token = write_files(tmp_path)
    short = tmp_path / "short"
    short.write_text("abc\n")
    cases = {
        "elsewhere without a token": (
            ["serve", "--listen", "0.0.0.0:0"],
            "--listen 0.0.0.0:0: not a loopback address",
        ),
        "a name without a token": (
            ["serve", "--listen", "example.com:8077"],
            "give --auth-token-file too",
        ),
        "no port": (["serve", "--listen", "127.0.0.1:http"], "the port must be a number"),
        "a port too high": (["serve", "--listen", "127.0.0.1:70000"], "0 to 65535"),
        "a missing token file": (
            ["serve", "--auth-token-file", str(tmp_path / "nope")],
            "cannot read it",
        ),
        "a short token": (["serve", "--auth-token-file", str(short)], "at least 16 characters"),
        "run --serve elsewhere": (
            ["run", "--serve", "0.0.0.0:0"],
            "--serve 0.0.0.0:0: not a loopback address; give --serve-token-file too",
        ),
        "a token file without --serve": (
            ["run", "--serve-token-file", str(token)],
            "--serve-token-file: only with --serve",
        ),
    }
    env = {"WEB_TEST_PASSWORD": "never-sent"}
    outcomes = await asyncio.gather(
        *(cli(args[0], "-c", str(config), *args[1:], env=env) for args, _ in cases.values())
    )
    for (case, (_, message)), outcome in zip(cases.items(), outcomes, strict=True):
        assert outcome.code == 2, (case, outcome)
        assert message in outcome.err, (case, outcome.err)
        assert "Traceback" not in outcome.err and len(outcome.err.splitlines()) == 1, case


async def test_behind_a_token_every_request_needs_it_and_a_browser_gets_a_cookie(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    config, token = write_files(tmp_path)
    proc = await start_cli(
        "serve", "-c", str(config), "--listen", "127.0.0.1:0", "--auth-token-file", str(token)
    )
    try:
        url = await announced(proc)
        answers = []
        for path in ("", "api/overview", "static/app.js", "nope"):
            bare = await get(http, url + path)
            assert bare.status == 401, (path, bare.status)
            assert bare.headers["WWW-Authenticate"].startswith("Bearer")
            wrong = await get(http, url + path, headers={"Authorization": "Bearer " + "x" * 32})
            assert wrong.status == 403, (path, wrong.status)
            answers += [bare, wrong]
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        overview = await get(http, url + "api/overview", headers=bearer)
        assert overview.status == 200 and overview.json()["jobs"][0]["job"] == "move"
        missing = await get(http, url + "nope", headers=bearer)
        assert missing.status == 404
        posted = await get(http, url + "api/overview", method="POST", headers=bearer)
        assert posted.status == 405

        wrong_visit = await get(http, url + "?token=" + "y" * 32)
        assert wrong_visit.status == 403
        visit = await get(http, url + f"api/overview?token={TOKEN}&x=1")
        assert visit.status == 303 and visit.headers["Location"] == "/api/overview?x=1"
        cookie = visit.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        name_value = cookie.split(";")[0]
        assert TOKEN not in name_value  # the cookie holds a value derived from the token
        again = await get(http, url + "api/overview", headers={"Cookie": name_value})
        assert again.status == 200 and again.json() == overview.json()
        stale = await get(http, url, headers={"Cookie": "image_transfer_token=0123"})
        assert stale.status == 403
        answers += [overview, missing, posted, wrong_visit, visit, again, stale]
    finally:
        served = await stop(proc)
    assert served.code == 0, served.err
    assert TOKEN not in served.err + served.out
    for answer in answers:
        assert safe_answer_problems(answer, secrets=(TOKEN, "never-sent")) == [], answer.text
