"""Secrets: a whole job at debug level writes neither a password nor a token anywhere.

The tokens are the ones the emulator really issued: the identity URL of the password clouds is
a small proxy in front of the emulator's identity service that records every token id it passes
on, and the token-mode cloud's token comes from ``Emulator.issue_token``.  Then every byte the
runs wrote is searched: their stdout and stderr, the report, the metrics file, the journal and
its ``-wal`` (read from a run killed mid-way, before SQLite folds it back), the lock file, and
anything else in the config's folder.  Also: journal files are owner-only, and a config file
that holds a password and that others may read is warned about.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.reliability.hostile import REPO, Outcome, cli, every_byte, leaks
from transfer.emulator import Emulator, tenant_from_name

SRC = tenant_from_name("src", "src@example.com", "src-Pw-a8f31c77")
DST = tenant_from_name("dst", "dst@example.com", "dst-Pw-1b9e40d2")
MiB = 1 << 20


class TokenRecorder:
    """Stands in front of the emulator's identity service and notes every token it issues."""

    def __init__(self, identity_url: str) -> None:
        self.identity_url = identity_url
        self.issued: list[tuple[str, str]] = []  # (tenant id, token id)
        self.url = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TokenRecorder]:
        async with aiohttp.ClientSession() as session:

            async def tokens(request: web.Request) -> web.StreamResponse:
                async with session.post(
                    self.identity_url + "/tokens",
                    data=await request.read(),
                    headers={"Content-Type": "application/json"},
                ) as reply:
                    body = await reply.read()
                    if reply.status == 200:
                        token = json.loads(body)["access"]["token"]
                        self.issued.append((token["tenant"]["id"], token["id"]))
                    return web.Response(
                        body=body, status=reply.status, content_type="application/json"
                    )

            app = web.Application()
            app.router.add_post("/v2.0/tokens", tokens)
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v2.0"
            try:
                yield self
            finally:
                await runner.cleanup()


def write_config(folder: Path, secrets: Path, proxy: str, emu: Emulator) -> Path:
    password_file = secrets / "dst-password"
    password_file.write_text(DST.password + "\n")
    password_file.chmod(0o600)
    text = f"""\
[journal]
path = "state/journal.db"

[log]
level = "debug"
format = "json"

[clouds.src]
identity_url = "{proxy}"
tenant_id = "{SRC.tenant_id}"
username = "{SRC.username}"
password_env = "REL_SRC_PW"

[clouds.dst]
identity_url = "{proxy}"
tenant_id = "{DST.tenant_id}"
username = "{DST.username}"
password_file = "{password_file}"

[clouds.dsttok]
tenant_id = "{DST.tenant_id}"
token_env = "REL_DST_TOKEN"
endpoints = {{ KR1 = "{emu.regions["KR1"]}" }}

[[jobs]]
name = "move"
source = {{ cloud = "src", region = "KR1" }}
targets = [ {{ cloud = "dst", region = "KR2" }}, {{ cloud = "dsttok", region = "KR1" }} ]
transfers = 2
"""
    path = folder / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return path


async def start(*args: str, cwd: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("REL_")}
    child_env.update(env)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "transfer", *args,
        cwd=cwd, env=child_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_a_whole_job_at_debug_level_writes_no_password_and_no_token(
    tmp_path: Path,
) -> None:
    folder, secrets = tmp_path / "job", tmp_path / "secrets"
    folder.mkdir()
    secrets.mkdir(mode=0o700)
    async with (
        Emulator(regions=("KR1", "KR2"), tenants=(SRC, DST), seed=5) as emu,
        TokenRecorder(emu.identity_url).running() as proxy,
    ):
        for index, size in enumerate((2 * MiB, 300_000, 0)):
            await emu.seed_image(
                "KR1", SRC.tenant_id, size=size, fill_seed=index, name=f"img-{index}"
            )
        static_token = emu.issue_token(DST.tenant_id)
        config = write_config(folder, secrets, proxy.url, emu)
        env = {"REL_SRC_PW": SRC.password, "REL_DST_TOKEN": static_token}
        args = ("-c", str(config), "-v", "--log-format", "json")
        written: dict[str, bytes | str] = {}

        # Run 1: a refused token (re-issued) and a slow link; killed once the journal has a WAL.
        emu.set_faults(
            error_rate=1.0, error_routes={"list"}, error_statuses=(401,), errors_remaining=1,
            bandwidth=2 * MiB,
        )  # fmt: skip
        wal = folder / "state" / "journal.db-wal"
        proc = await start("run", *args, "--no-progress", cwd=folder, env=env)
        try:
            for _ in range(300):
                if emu.counters("KR2")["bytes_received"] > 0 and wal.exists():
                    break
                await asyncio.sleep(0.02)
            assert wal.exists() and wal.stat().st_size > 0, "no WAL to search"
            proc.send_signal(signal.SIGKILL)
            out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        written["run 1 stdout"], written["run 1 stderr"] = out, err
        written["journal.db-wal of the killed run"] = wal.read_bytes()
        wal_mode = stat.S_IMODE(wal.stat().st_mode)

        # Run 2 resumes and finishes; then verify, both at debug level.
        emu.set_faults(bandwidth=None)
        report, metrics = folder / "report.json", folder / "metrics.prom"
        second = await cli(
            "run", *args, "--no-progress", "--report", str(report),
            "--metrics-file", str(metrics), cwd=folder, env=env,
        )  # fmt: skip
        assert second.code == 0, second.out + second.err
        verified: Outcome = await cli("verify", *args, cwd=folder, env=env)
        assert verified.code == 0, verified.out + verified.err
        status = await cli("status", "-c", str(config), "--images", cwd=folder, env={})
        for name, outcome in (("run 2", second), ("verify", verified), ("status", status)):
            written[f"{name} stdout"], written[f"{name} stderr"] = outcome.out, outcome.err
        written.update(every_byte(folder))

        tokens = [token for _, token in proxy.issued]
        # The test sees what it claims to: a re-issue happened, and logging was at debug level.
        assert sum(1 for tenant, _ in proxy.issued if tenant == SRC.tenant_id) >= 4
        assert len(set(tokens)) == len(tokens) >= 6
        assert b'"event": "http.request"' in err
        assert '"event": "http.request"' in second.err
        assert {"report.json", "metrics.prom", "state/journal.db"} <= set(written)

        found = leaks([SRC.password, DST.password, static_token, *tokens], written)
        assert found == [], found

    # The journal and everything beside it are the owner's only.
    state = folder / "state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert wal_mode == 0o600
    for path in state.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


async def test_a_config_others_can_read_is_warned_about_when_it_holds_a_password(
    tmp_path: Path,
) -> None:
    async with Emulator(regions=("KR1", "KR2"), tenants=(SRC, DST)) as emu:

        def config(name: str, mode: int, secret_line: str) -> Path:
            folder = tmp_path / name
            folder.mkdir()
            path = folder / "config.toml"
            path.write_text(
                f"""\
[journal]
path = "journal.db"

[clouds.src]
identity_url = "{emu.identity_url}"
tenant_id = "{SRC.tenant_id}"
username = "{SRC.username}"
{secret_line}

[[jobs]]
name = "move"
source = {{ cloud = "src", region = "KR1" }}
targets = [ {{ cloud = "src", region = "KR2" }} ]
"""
            )
            path.chmod(mode)
            return path

        shared_file = tmp_path / "shared-password"
        shared_file.write_text(SRC.password)
        shared_file.chmod(0o644)
        cases = {
            "inline, readable by others": config("a", 0o644, f'password = "{SRC.password}"'),
            "inline, owner only": config("b", 0o600, f'password = "{SRC.password}"'),
            "password file readable by others": config(
                "c", 0o600, f'password_file = "{shared_file}"'
            ),
            "variable, config readable by others": config("d", 0o644, 'password_env = "REL_PW"'),
        }
        results = await asyncio.gather(
            *(
                cli("plan", "-c", str(path), cwd=REPO, env={"REL_PW": SRC.password})
                for path in cases.values()
            )
        )
    said = {}
    for (case, path), result in zip(cases.items(), results, strict=True):
        assert result.code == 0, (case, result.err)
        assert SRC.password not in result.out + result.err, case
        said[case] = [
            line.removeprefix(f"image-transfer: warning: {path}: ")
            for line in result.err.splitlines()
            if line.startswith("image-transfer: warning: ")
        ]
    plain = "clouds.src.password: a plain password in the config file; prefer password_env or "
    plain += "password_file"
    readable = "clouds.src.password: the config file holds a password and is readable by other "
    readable += "users (chmod 600 it)"
    assert said == {
        "inline, readable by others": [plain, readable],
        "inline, owner only": [plain],
        "password file readable by others": [
            f"clouds.src.password_file: {shared_file} is readable by other users (chmod 600 it)"
        ],
        "variable, config readable by others": [],
    }
