"""How many requests a copy costs, per route, counted by the emulator itself: a new private copy
is one create (properties and tags in the body), one upload and one GET that verifies on the
target, and one download on the source; sharing adds only the member calls and one visibility
update; an in-sync job only lists; a resumed run still ends with exactly one verified copy; a
tag the target refuses in the create body costs a second create and is reported, not fatal.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
from aiohttp import web

from tests.conftest import token
from tests.emulator.helpers import OCTET, Api
from tests.engine.helpers import (
    DST,
    JOB,
    PARTNER,
    SRC,
    Target,
    copies,
    copy_problems,
    emulator_fixture,
    environment,
    job_toml,
    journal_problems,
    password_env,
    received,
    share,
    write_config,
)
from transfer.cloud.sessions import open_clouds
from transfer.config.loader import load_config
from transfer.config.settings import HttpSettings
from transfer.emulator import Emulator
from transfer.engine.planning import build_plan
from transfer.engine.results import RunSummary
from transfer.engine.runner import run_plan
from transfer.journal.sqlite import SqliteJournal
from transfer.metadata import desired_target, target_image_id
from transfer.models import Image

FAST = HttpSettings(attempts=4, backoff_base=0.01, backoff_cap=0.1, retry_total=10.0)
SIZE = 256 * 1024
#: Source in KR1, the one target in KR2: each region's counters are one side's requests.
TO_KR2 = (("src", "KR2"),)
KR2 = (Target("src/KR2", "KR2", SRC),)

emu = emulator_fixture(seed=17)


async def run_job(config_path: Path) -> RunSummary:
    config = load_config(config_path, environ=environment())
    async with (
        SqliteJournal(config.journal.path) as journal,
        open_clouds(config, FAST) as clouds,
    ):
        plan = await build_plan(config, config.jobs[JOB], clouds, journal)
        return await run_plan(plan, journal=journal)


def requests(emu: Emulator, region: str) -> dict[str, int]:
    """Requests per route the region has served since the counters were last reset."""
    return {route: int(n) for route, n in emu.counters(region)["requests"].items() if n}


def without_listing(counts: dict[str, int]) -> dict[str, int]:
    """The per-image requests: planning's listing (one page here) checked and taken out."""
    assert counts.get("list") == 1, counts
    return {route: n for route, n in counts.items() if route != "list"}


async def seed(
    emu: Emulator, count: int, *, shared: bool = False, prefix: str = "img"
) -> list[str]:
    return [
        await emu.seed_image(
            "KR1",
            SRC.tenant_id,
            size=SIZE,
            fill_seed=300 + index,
            name=f"{prefix}-{index}",
            build=str(index),
            os_distro="ubuntu",
            tags=["golden", f"n{index}"],
            visibility="shared" if shared else "private",
        )
        for index in range(count)
    ]


async def test_a_private_copy_is_create_upload_and_one_get_and_a_rerun_only_lists(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    n = 4
    sources = await seed(emu, n)
    config = write_config(tmp_path, emu, job_toml(targets=TO_KR2))
    emu.reset_counters()

    summary = await run_job(config)

    assert summary.failed == [], [r.error for r in summary.failed]
    assert without_listing(requests(emu, "KR2")) == {"create": n, "upload": n, "show": n}
    assert without_listing(requests(emu, "KR1")) == {"download": n}
    # The fewer requests still make exact copies: tags, properties and markers included.
    assert await copy_problems(emu, http, sources, KR2) == []
    assert await journal_problems(tmp_path, sources, KR2) == []

    emu.reset_counters()
    again = await run_job(config)
    assert [r.outcome for r in again.results] == ["in-sync"] * n
    assert requests(emu, "KR2") == {"list": 1}
    assert requests(emu, "KR1") == {"list": 1}


async def test_a_shared_copy_adds_only_its_member_calls_and_one_visibility_update(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    n = 3
    sources = await seed(emu, n, shared=True)
    for source in sources:
        await share(emu, http, source, [PARTNER])
    config = write_config(tmp_path, emu, job_toml(targets=TO_KR2))
    emu.reset_counters()

    summary = await run_job(config)

    assert summary.failed == [], [r.error for r in summary.failed]
    # Per image: the member added by the owner, and accepted by the partner (whose
    # credentials the config has); nothing listed on a target this run created.
    assert without_listing(requests(emu, "KR2")) == {
        "create": n,
        "upload": n,
        "show": n,
        "update": n,
        "members": 2 * n,
    }
    # The source's members are listed once each: the source is shared and the job copies them.
    assert without_listing(requests(emu, "KR1")) == {"download": n, "members": n}
    assert await copy_problems(emu, http, sources, KR2) == []  # members accepted, too

    emu.reset_counters()
    again = await run_job(config)
    assert [r.outcome for r in again.results] == ["in-sync"] * n
    assert without_listing(requests(emu, "KR2")) == {"members": n}  # member drift, per copy
    assert without_listing(requests(emu, "KR1")) == {"members": n}


async def test_members_of_a_private_source_are_never_listed(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    [private] = await seed(emu, 1, prefix="private")
    [shared] = await seed(emu, 1, shared=True, prefix="shared")
    await share(emu, http, shared, [PARTNER])
    no_members = job_toml(targets=TO_KR2).replace("members = true", "members = false")
    config = write_config(tmp_path, emu, no_members.replace("accept = true", "accept = false"))
    emu.reset_counters()

    summary = await run_job(config)

    assert summary.failed == [], [r.error for r in summary.failed]
    # A job that does not copy members asks for no one's, shared source or not.
    assert without_listing(requests(emu, "KR1")) == {"download": 2}
    [copy] = copies(emu, "KR2", SRC.tenant_id)[shared]
    assert copy["visibility"] == "shared" and copy["status"] == "active"
    assert copies(emu, "KR2", SRC.tenant_id)[private][0]["visibility"] == "private"


async def source_image(api: Api, image_id: str) -> Image:
    reply = await api.call("GET", f"/v2/images/{image_id}")
    assert reply.status == 200, reply.body
    return Image.from_api(reply.json())


async def test_a_resumed_run_adopts_what_a_killed_run_left_and_makes_one_copy_each(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    left_queued, left_active, left_deleted = await seed(emu, 3)
    config_path = write_config(tmp_path, emu, job_toml(targets=TO_KR2))
    job = load_config(config_path, environ=environment()).jobs[JOB]
    tok = await token(emu, SRC, http)
    source_api, target_api = Api(http, emu.regions["KR1"], tok), Api(http, emu.regions["KR2"], tok)
    # What a killed run leaves: its create under the pair's id, with or without the upload
    # after it (and the tags still to add), or a target deleted since (Glance keeps the id
    # reserved: 409 on create).
    for source_id in (left_queued, left_active, left_deleted):
        src = await source_image(source_api, source_id)
        desired = desired_target(
            src, job=JOB, source_region="KR1", copy=job.copy, target_owner=SRC.tenant_id
        )
        target_id = target_image_id(JOB, "KR1", src.id, src.checksum, "src/KR2", 0)
        body = {**desired.create_fields, "id": target_id, "tags": sorted(desired.tags)}
        if source_id == left_active:
            del body["tags"]  # this one as an engine that added the tags after the upload
        made = await target_api.call("POST", "/v2/images", json=body)
        assert made.status == 201, made.body
        if source_id == left_active:  # killed after the upload, before the tags went on
            path = emu.image_path("KR1", source_id)
            assert path is not None
            put = await target_api.call(
                "PUT",
                f"/v2/images/{target_id}/file",
                data=path.read_bytes(),
                headers={"Content-Type": OCTET},
            )
            assert put.status == 204, put.body
        if source_id == left_deleted:
            assert (await target_api.call("DELETE", f"/v2/images/{target_id}")).status == 204
    emu.reset_counters()
    sent_before = received(emu)

    summary = await run_job(config_path)

    assert summary.failed == [], [r.error for r in summary.failed]
    sources = [left_queued, left_active, left_deleted]
    assert await copy_problems(emu, http, sources, KR2) == []
    assert await journal_problems(tmp_path, sources, KR2) == []
    # Queued: uploaded into (no second target); active: not sent again; deleted: generation 1.
    assert received(emu) - sent_before == 2 * SIZE
    src = await source_image(source_api, left_deleted)
    [copy] = copies(emu, "KR2", SRC.tenant_id)[left_deleted]
    assert copy["id"] == target_image_id(JOB, "KR1", src.id, src.checksum, "src/KR2", 1)
    counts = without_listing(requests(emu, "KR2"))
    # queued: create (409), GET, upload, GET; active: GET, its two tags, GET after them;
    # deleted: create (409), GET (404), create, upload, GET.
    assert counts == {"create": 3, "show": 6, "upload": 2, "tags": 2}, counts


# -- a target stricter about tags than the metadata knows --------------------------------------

REFUSED = "no-such-tag-here"


def _refuses(request: web.Request, body: bytes) -> bool:
    if request.method == "PUT" and request.path.endswith(f"/tags/{REFUSED}"):
        return True
    return request.method == "POST" and request.path == "/v2/images" and REFUSED.encode() in body


@asynccontextmanager
async def strict_about_tags(upstream: str) -> AsyncIterator[str]:
    """A real server in front of an emulated region that refuses the tag ``REFUSED`` (in a
    create body or on its own, with a 400 naming it, as a stricter Glance would) and passes
    everything else on; its URL."""
    async with aiohttp.ClientSession(auto_decompress=False) as http:

        async def forward(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            if _refuses(request, body):
                message = f"Invalid tag {REFUSED!r}: not allowed on this cloud."
                error = {"message": message, "code": 400, "title": "Bad Request"}
                return web.json_response({"error": error}, status=400)
            sent = {
                k: v
                for k, v in request.headers.items()
                if k.lower() in ("x-auth-token", "content-type", "accept", "range")
            }
            async with http.request(
                request.method, upstream + request.path_qs, data=body or None, headers=sent
            ) as reply:
                data = await reply.read()
                kept = {
                    k: v
                    for k, v in reply.headers.items()
                    if k.lower() in ("content-type", "content-md5", "content-range")
                }
                return web.Response(status=reply.status, body=data, headers=kept)

        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        try:
            await web.SockSite(runner, sock).start()
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            await runner.cleanup()


async def test_a_tag_the_target_refuses_in_the_create_is_reported_and_the_image_copied(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    source = await emu.seed_image(
        "KR1", SRC.tenant_id, size=SIZE, fill_seed=9, name="strict", tags=["kept", REFUSED]
    )
    async with strict_about_tags(emu.regions["KR2"]) as strict_url:
        config = write_config(tmp_path, emu, job_toml(targets=(("dst", "KR2"),)))
        text = config.read_text()
        line = f'password_env = "{password_env("dst")}"\n'
        config.write_text(text.replace(line, f'{line}endpoints = {{ KR2 = "{strict_url}" }}\n'))
        emu.reset_counters()

        summary = await run_job(config)

    [result] = summary.results
    assert result.outcome == "copied", result.error
    assert any(f"tag {REFUSED!r} refused by the target" in w for w in result.warnings)
    [copy] = copies(emu, "KR2", DST.tenant_id)[source]
    src = emu.image_record("KR1", source)
    assert copy["status"] == "active" and copy["tags"] == ["kept"]
    assert (copy["size"], copy["checksum"]) == (src["size"], src["checksum"])
    # The refused create never reached the region; the one without tags did, then the tag
    # the target takes went on by itself and the image was read once more after it.
    counts = without_listing(requests(emu, "KR2"))
    assert counts == {"create": 1, "upload": 1, "show": 2, "tags": 1}, counts


async def watch(emu: Emulator, wanted: set[tuple[str, str, int]], seen: dict[Any, float]) -> None:
    """Record when each (region, route, n) was first seen: the region's n-th request on that
    route came in (the emulator counts a request when it arrives, before its latency)."""
    while True:
        now = time.monotonic()
        for region, route, n in wanted - seen.keys():
            if emu.counters(region)["requests"].get(route, 0) >= n:
                seen[(region, route, n)] = now
        await anyio.sleep(0.005)


async def run_watched(
    emu: Emulator, config: Path, wanted: set[tuple[str, str, int]]
) -> tuple[RunSummary, dict[Any, float]]:
    seen: dict[Any, float] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch, emu, wanted, seen)
        summary = await run_job(config)
        tg.cancel_scope.cancel()
    assert summary.failed == [], [r.error for r in summary.failed]
    assert wanted <= seen.keys(), seen
    return summary, seen


async def test_the_source_is_read_while_the_create_is_in_flight(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources = await seed(emu, 2, prefix="ahead")
    config = write_config(tmp_path, emu, job_toml(targets=TO_KR2, transfers=1))
    # Every create takes 0.6 s to be answered; nothing else is slowed down.
    emu.set_faults(latency=0.6, latency_routes={"create"})
    emu.reset_counters()

    _, seen = await run_watched(emu, config, {("KR2", "create", 1), ("KR1", "download", 1)})

    # The download was sent long before the create's answer came back (one round trip hidden).
    assert seen[("KR1", "download", 1)] - seen[("KR2", "create", 1)] < 0.4, seen
    assert without_listing(requests(emu, "KR1")) == {"download": 2}  # and read once per image
    assert await copy_problems(emu, http, sources, KR2) == []
    assert await journal_problems(tmp_path, sources, KR2) == []


async def test_the_next_images_create_is_made_while_an_upload_holds_the_only_slot(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources = await seed(emu, 2, prefix="early")
    config = write_config(tmp_path, emu, job_toml(targets=TO_KR2, transfers=1))
    # Every upload takes 0.8 s to be answered.
    emu.set_faults(latency=0.8, latency_routes={"upload"})
    emu.reset_counters()

    _, seen = await run_watched(emu, config, {("KR2", "upload", 1), ("KR2", "create", 2)})

    # One transfer slot, and the second image's create came while the first one's upload held
    # it: a create moves no bytes, so it does not wait for a slot.
    assert seen[("KR2", "create", 2)] - seen[("KR2", "upload", 1)] < 0.5, seen
    assert emu.counters("KR2")["requests"]["upload"] == 2
    assert await copy_problems(emu, http, sources, KR2) == []
    assert await journal_problems(tmp_path, sources, KR2) == []


async def test_a_transfer_slot_moves_the_next_image_while_the_last_ones_members_are_added(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sources = await seed(emu, 2, shared=True, prefix="lanes")
    for source in sources:
        await share(emu, http, source, [PARTNER])
    # One transfer slot; every member call takes 0.8 s (the copy's are two: add, accept).
    config = write_config(tmp_path, emu, job_toml(targets=TO_KR2, transfers=1))
    emu.set_faults(latency=0.8, latency_routes={"members"})
    emu.reset_counters()

    _, seen = await run_watched(emu, config, {("KR2", "members", 1), ("KR2", "create", 2)})

    # The second image's create came while the first one's member calls were under way: its
    # metadata steps ran among the checkers, not in the transfer slot.
    assert seen[("KR2", "create", 2)] - seen[("KR2", "members", 1)] < 0.5, seen
    assert await copy_problems(emu, http, sources, KR2) == []  # shared, members accepted
    assert await journal_problems(tmp_path, sources, KR2) == []


async def test_copies_reuse_connections_so_a_handshake_is_not_paid_per_image(
    emu: Emulator, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    n, transfers = 8, 2
    sources = await seed(emu, n, prefix="pooled")
    config = write_config(tmp_path, emu, job_toml(targets=TO_KR2, transfers=transfers))
    emu.reset_counters()

    summary = await run_job(config)

    assert summary.failed == [], [r.error for r in summary.failed]
    # Over a real link every new connection costs a TCP and TLS handshake (two round trips):
    # the uploads, creates and GETs of 8 copies share a few connections, on each side.
    target, source = emu.counters("KR2"), emu.counters("KR1")
    assert target["requests"]["upload"] == n
    assert target["connections"] <= transfers + 2, target
    assert source["connections"] <= transfers + 2, source
    assert await copy_problems(emu, http, sources, KR2) == []
