"""``image-transfer images`` end to end: ``main([...])`` in this process, the emulator on a
loop of its own in a background thread (the command runs its own event loop)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import structlog

from transfer.cli.main import main
from transfer.emulator import Emulator, TenantSpec

T = TypeVar("T")


class EmulatorThread:
    """An emulator serving from its own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.emu = Emulator(regions=("KR1", "KR2"), seed=0)
        self.call(self.emu.start())

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def close(self) -> None:
        self.call(self.emu.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def cloud() -> Iterator[EmulatorThread]:
    running = EmulatorThread()
    try:
        yield running
    finally:
        running.close()
        structlog.reset_defaults()  # the command configured logging for itself


def use_tenant(monkeypatch: pytest.MonkeyPatch, emu: Emulator, tenant: TenantSpec) -> None:
    """The OS_* environment an operator would have for this tenant."""
    monkeypatch.setenv("OS_AUTH_URL", emu.identity_url)
    monkeypatch.setenv("OS_TENANT_ID", tenant.tenant_id)
    monkeypatch.setenv("OS_USERNAME", tenant.username)
    monkeypatch.setenv("OS_PASSWORD", tenant.password)
    monkeypatch.setenv("OS_REGION_NAME", "KR1")
    for name in ("OS_AUTH_TOKEN", "OS_IMAGE_URL", "OS_CACERT", "OS_TENANT_NAME"):
        monkeypatch.delenv(name, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["images", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_the_images_command_end_to_end(
    cloud: EmulatorThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    emu = cloud.emu
    src, dst = emu.tenant("demo-src"), emu.tenant("demo-dst")
    use_tenant(monkeypatch, emu, src)
    cloud.call(emu.seed_image("KR1", src.tenant_id, data=b"seeded", name="seeded-one"))

    code, out, _ = run(capsys, "list")
    assert code == 0
    assert out.splitlines()[0].split() == ["ID", "NAME", "STATUS", "VISIBILITY", "SIZE", "DISK"]
    assert "seeded-one" in out and "active" in out

    data = os.urandom(2 * 1024 * 1024 + 3)
    disk = tmp_path / "disk.raw"
    disk.write_bytes(data)
    code, out, _ = run(
        capsys,
        "create",
        "--name",
        "from-cli",
        "--os-type",
        "linux",
        "--disk-format",
        "raw",
        "--property",
        "purpose=test",
        "--tag",
        "cli",
        "--file",
        str(disk),
        "--json",
    )
    assert code == 0
    created = json.loads(out)["image"]
    image_id = created["id"]
    assert created["status"] == "active" and created["purpose"] == "test"
    assert created["checksum"] == hashlib.md5(data).hexdigest() and created["tags"] == ["cli"]

    code, out, _ = run(capsys, "show", image_id)
    assert code == 0 and "from-cli" in out and "purpose" in out

    target = tmp_path / "copy.raw"
    code, out, _ = run(capsys, "download", image_id, str(target))
    assert code == 0 and "verified" in out
    assert target.read_bytes() == data

    # A partial file is resumed with a Range request: only the rest crosses the wire.
    target.write_bytes(data[:700_000])
    served = emu.counters("KR1")["bytes_served"]
    code, out, _ = run(capsys, "download", image_id, str(target))
    assert code == 0 and "verified" in out
    assert target.read_bytes() == data
    assert emu.counters("KR1")["bytes_served"] - served == len(data) - 700_000

    # A complete file with other bytes is never overwritten.
    target.write_bytes(b"\0" * len(data))
    code, _, err = run(capsys, "download", image_id, str(target))
    assert code == 1 and "refusing to overwrite" in err
    assert target.read_bytes() == b"\0" * len(data)

    code, out, _ = run(capsys, "tag", image_id, "second")
    assert code == 0
    code, out, _ = run(
        capsys, "update", image_id, "--set", "flavor=mint", "--unset", "purpose", "--json"
    )
    assert code == 0
    updated = json.loads(out)["image"]
    assert updated["flavor"] == "mint" and "purpose" not in updated
    assert sorted(updated["tags"]) == ["cli", "second"]

    code, _, _ = run(capsys, "update", image_id, "--set", "visibility=shared")
    assert code == 0
    code, out, _ = run(capsys, "members", "add", image_id, dst.tenant_id, "--json")
    assert code == 0 and json.loads(out)["member"]["status"] == "pending"

    use_tenant(monkeypatch, emu, dst)
    code, out, _ = run(capsys, "members", "accept", image_id, "--json")
    assert code == 0
    accepted = json.loads(out)["member"]
    assert (accepted["member_id"], accepted["status"]) == (dst.tenant_id, "accepted")
    code, out, _ = run(capsys, "list", "--member-status", "accepted", "--json")
    assert [i["id"] for i in json.loads(out)["images"]] == [image_id]

    use_tenant(monkeypatch, emu, src)
    code, out, _ = run(capsys, "members", "list", image_id)
    assert code == 0 and dst.tenant_id in out and "accepted" in out
    code, out, _ = run(capsys, "delete", image_id)
    assert code == 0
    code, out, err = run(capsys, "show", image_id)
    assert code == 1
    assert err.startswith(f"image-transfer: error: GET /v2/images/{image_id}: 404")


def test_user_mistakes_give_one_line_and_the_right_exit_code(
    cloud: EmulatorThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    emu = cloud.emu
    src = emu.tenant("demo-src")
    use_tenant(monkeypatch, emu, src)

    monkeypatch.setenv("OS_PASSWORD", "wrong-password-5d1")
    code, out, err = run(capsys, "list")
    assert code == 3
    assert "credentials for cloud" in err and "were refused by 127.0.0.1" in err
    assert "wrong-password-5d1" not in out + err
    monkeypatch.setenv("OS_PASSWORD", src.password)

    code, _, err = run(capsys, "list", "--region", "JP1")
    assert code == 3 and "lists KR1, KR2" in err

    monkeypatch.delenv("OS_REGION_NAME")
    code, _, err = run(capsys, "list")
    assert code == 2 and "no region" in err
    monkeypatch.setenv("OS_REGION_NAME", "KR1")

    code, _, err = run(capsys, "upload", "some-id", str(tmp_path / "missing.raw"))
    assert code == 2 and "no such file" in err

    code, _, err = run(capsys, "update", "some-id")
    assert code == 2 and "nothing to update" in err

    with pytest.raises(SystemExit) as exited:
        main(["images", "create", "--name", "x"])
    assert exited.value.code == 2
    assert "--os-type" in capsys.readouterr().err


def test_token_mode_from_the_environment(
    cloud: EmulatorThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = cloud.emu
    src = emu.tenant("demo-src")
    image_id = cloud.call(emu.seed_image("KR1", src.tenant_id, data=b"x", name="by-token"))
    for name in ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD", "OS_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OS_AUTH_TOKEN", emu.issue_token(src.tenant_id))
    monkeypatch.setenv("OS_IMAGE_URL", emu.regions["KR1"])
    monkeypatch.setenv("OS_REGION_NAME", "KR1")
    code, out, _ = run(capsys, "show", image_id, "--json")
    assert code == 0 and json.loads(out)["image"]["name"] == "by-token"
    assert emu.identity_counters()["requests"].get("token", 0) == 0


def test_list_stops_at_the_limit_and_says_so(
    cloud: EmulatorThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = cloud.emu
    src = emu.tenant("demo-src")
    use_tenant(monkeypatch, emu, src)
    for n in range(3):
        cloud.call(emu.seed_image("KR1", src.tenant_id, data=b"x", name=f"img-{n}"))
    code, out, err = run(capsys, "list", "--limit", "2", "--sort-key", "name", "--sort-dir", "asc")
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()[1:]] == ["img-0", "img-1"]
    assert "more than 2 images" in err
    code, out, err = run(capsys, "list", "--limit", "3", "--json", "--insecure")
    assert code == 0 and len(json.loads(out)["images"]) == 3
    assert "more than" not in err
    assert "warning: TLS certificates are not verified" in err


def test_images_takes_a_cloud_from_the_config_file(
    cloud: EmulatorThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    emu = cloud.emu
    src = emu.tenant("demo-src")
    image_id = cloud.call(emu.seed_image("KR1", src.tenant_id, data=b"abc", name="from-config"))
    for name in ("OS_AUTH_URL", "OS_PASSWORD", "OS_AUTH_TOKEN", "OS_USERNAME", "OS_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config.toml"
    config.write_text(
        f"""
[clouds.src]
identity_url = "{emu.identity_url}"
tenant_id = "{src.tenant_id}"
username = "{src.username}"
password_env = "SRC_PW"
"""
    )
    monkeypatch.setenv("SRC_PW", src.password)
    code, out, _ = run(
        capsys, "-c", str(config), "--cloud", "src", "--region", "KR1", "show", image_id, "--json"
    )
    assert code == 0 and json.loads(out)["image"]["name"] == "from-config"

    # A cloud the file lacks: a usage error naming the defined ones.
    code, _, err = run(capsys, "-c", str(config), "--cloud", "srcc", "--region", "KR1", "list")
    assert code == 2 and "no cloud named 'srcc'" in err and "did you mean 'src'" in err
    code, _, err = run(capsys, "-c", str(config), "--region", "KR1", "list")
    assert code == 2 and "--config and --cloud go together" in err


def test_a_token_with_one_endpoint_needs_no_region(
    cloud: EmulatorThread,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = cloud.emu
    src = emu.tenant("demo-src")
    image_id = cloud.call(emu.seed_image("KR2", src.tenant_id, data=b"x", name="one-endpoint"))
    for name in (
        "OS_AUTH_URL",
        "OS_USERNAME",
        "OS_PASSWORD",
        "OS_TENANT_ID",
        "OS_REGION_NAME",
        "OS_IMAGE_URL",
        "OS_AUTH_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SRC_TOKEN", emu.issue_token(src.tenant_id))
    endpoint = f"KR2={emu.regions['KR2']}"
    code, out, err = run(
        capsys, "--token-env", "SRC_TOKEN", "--endpoint", endpoint, "show", image_id, "--json"
    )
    assert code == 0, err
    assert json.loads(out)["image"]["name"] == "one-endpoint"
    # With two endpoints the region must be named, and the message says which there are.
    code, _, err = run(
        capsys,
        "--token-env",
        "SRC_TOKEN",
        "--endpoint",
        endpoint,
        "--endpoint",
        f"KR1={emu.regions['KR1']}",
        "list",
    )
    assert code == 2 and "no region: pass --region, one of the endpoints' regions: KR1, KR2" in err
