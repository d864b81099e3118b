"""The curl tour (every call of the seed guide with curl) against the emulator."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from transfer.emulator import Emulator

TOUR = Path(__file__).with_name("curl_tour.sh")

EXPECTED = [
    ("issue-token", "200"),
    ("create-image", "201"),
    ("show-image", "200"),
    ("list-images", "200"),
    ("update-add", "200"),
    ("update-replace", "200"),
    ("update-remove", "200"),
    ("upload", "204"),
    ("download", "200"),
    ("download-bytes", "same"),
    ("download-range", "206"),
    ("add-tag", "204"),
    ("remove-tag", "204"),
    ("set-visibility-shared", "200"),
    ("add-member", "200"),
    ("list-members", "200"),
    ("show-member", "200"),
    ("issue-token", "200"),
    ("accept-member", "200"),
    ("delete-member", "204"),
    ("delete-image", "204"),
    ("show-deleted-image", "404"),
]


async def test_every_seed_call_answers_as_documented(emulator: Emulator) -> None:
    owner, member = emulator.tenants
    # The emulator serves from this event loop: run the script without blocking it.
    proc = await asyncio.create_subprocess_exec(
        "bash",
        str(TOUR),
        emulator.identity_url,
        emulator.regions["KR1"],
        owner.tenant_id,
        owner.username,
        owner.password,
        member.tenant_id,
        member.username,
        member.password,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHON": sys.executable},
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    lines = [line.split(" ", 1) for line in stdout.decode().splitlines()]
    assert [(label, code) for code, label in lines] == EXPECTED
    assert emulator.list_all("KR1") == []
