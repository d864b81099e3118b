"""``image-transfer demo`` as a user runs it (a child process, small images): both migrations
finish, verify, and find nothing to do the second time; the second is the private OpenStack on
Keystone v3 into NHN on v2.0, read from the clouds.yaml the demo writes."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.engine.helpers import cli


async def test_the_demo_migrates_nhn_regions_and_a_private_openstack(tmp_path: Path) -> None:
    run = await cli("demo", "--scale", "0.02", "--workdir", str(tmp_path), within=90)
    assert run.code == 0, run.out + run.err
    out = run.out
    assert "verify: all 14 copies match their source" in out
    assert "second run: 14 of 14 in sync, 0 bytes moved" in out
    assert "job private-to-nhn: private/REGIONONE -> nhn/KR1" in out
    assert "verify: all 3 copies match their source" in out
    assert "second run: 3 of 3 in sync, 0 bytes moved" in out
    # The private cloud's credentials are a v3 clouds.yaml entry; its password is never shown.
    entry = yaml.safe_load((tmp_path / "clouds.yaml").read_text())["clouds"]["private"]
    assert entry["identity_api_version"] == 3
    assert entry["auth"]["user_domain_name"] == "Default"
    assert entry["auth"]["password"] not in out + run.err


async def test_the_demo_can_skip_the_private_openstack(tmp_path: Path) -> None:
    run = await cli("demo", "--scale", "0.01", "--no-private", "--workdir", str(tmp_path))
    assert run.code == 0, run.out + run.err
    assert "second run: 14 of 14 in sync" in run.out
    assert "private" not in run.out
