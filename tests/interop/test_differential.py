"""Real Glance and the emulator answer the same scripted tour of the Image API alike: same
statuses, same headers that matter, same bodies once ids and times are named, except for the
differences in ``allowlist``, each of which is meant.  The tour runs once against Glance and
once against each flavour of the emulator: ``glance`` (no differences but the harness's) and
``nhn`` (the seed's rules, each named)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import aiohttp
import pytest

from interop.server import GlanceCloud
from tests.interop.allowlist import ALLOWED
from tests.interop.compare import differences, split
from tests.interop.tour import Observation, Side, run_tour
from tests.interop.tour_surface import surface
from transfer.emulator import Emulator, TenantSpec

ROLE_TENANTS = {"owner": "tour-owner", "member": "tour-member", "outsider": "tour-outsider"}
README = Path(__file__).resolve().parents[2] / "interop" / "README.md"

FLAVOURS = ("nhn", "glance")
#: Glance's observations, then the emulator's per flavour.
Tours = tuple[list[Observation], dict[str, list[Observation]]]


async def _all(glance: GlanceCloud) -> Tours:
    ids = {role: glance.tenant(name).project_id for role, name in ROLE_TENANTS.items()}
    # The emulator's tenants carry the same ids, so owners and members compare as equal.
    specs = [
        TenantSpec(t.name, t.project_id, f"{t.name}@example.com", f"{t.name}-password")
        for t in glance.tenants.values()
    ]
    real = Side(
        "glance",
        glance.regions["KR1"],
        {role: glance.tenant(name).token for role, name in ROLE_TENANTS.items()},
        ids,
    )
    # One connection per request: a server that answers before reading a body (415, 409)
    # leaves the connection unusable, and reusing it would fail the next step, not this one.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        glance_seen = await run_tour(real, session, surface)
        emulator_seen = {}
        for flavour in FLAVOURS:
            async with Emulator(regions=("KR1",), tenants=specs, flavour=flavour) as emu:
                twin = Side(
                    f"emulator ({flavour})",
                    emu.regions["KR1"],
                    {role: emu.issue_token(ids[role]) for role in ROLE_TENANTS},
                    ids,
                )
                emulator_seen[flavour] = await run_tour(twin, session, surface)
    return glance_seen, emulator_seen


@pytest.fixture(scope="module")
def tours(glance: GlanceCloud) -> Tours:
    """The tour run once against Glance and each flavour (a module's tests share it)."""
    return asyncio.run(_all(glance))


def by_step(observations: list[Observation]) -> Mapping[str, Observation]:
    return {o.step: o for o in observations}


def test_the_tour_names_each_step_once(tours: Tours) -> None:
    repeated = [step for step, n in Counter(o.step for o in tours[0]).items() if n > 1]
    assert repeated == []
    assert len(tours[0]) > 250


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_glance_and_the_emulator_answer_alike_but_for_the_allowed_differences(
    tours: Tours, flavour: str
) -> None:
    unexplained, _ = split(differences(tours[0], tours[1][flavour]), ALLOWED[flavour])
    assert not unexplained, (
        f"real Glance and the emulator's {flavour} flavour differ; fix the emulator, or allow "
        "the difference in tests/interop/allowlist.py with its reason:\n"
        + "\n".join(map(str, unexplained))
    )


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_allowed_difference_still_occurs_and_is_documented(
    tours: Tours, flavour: str
) -> None:
    allowed = ALLOWED[flavour]
    _, used = split(differences(tours[0], tours[1][flavour]), allowed)
    assert [entry for entry in allowed if entry not in used] == []
    readme = README.read_text()
    assert [entry.step for entry in allowed if f"`{entry.step}`" not in readme] == []


def test_glance_behaves_as_the_engine_expects(tours: Tours) -> None:
    """What the engine's design leans on, seen on real Glance itself."""
    seen = by_step(tours[0])
    ranged = seen["download: Range first bytes"]
    assert ranged.status == 206
    assert ranged.headers["Content-Range"].startswith("bytes 0-9/")
    assert ranged.body["bytes"] == 10
    whole = seen["download: whole"]
    assert whole.headers["Content-MD5"] == whole.body["md5"]  # hex MD5 of the bytes
    assert seen["show: after an interrupted upload"].body["status"] == "queued"
    assert seen["show: after the second upload"].body["status"] == "active"
    next_link = seen["list: page 1 of 2 by name"].body["next"]
    assert next_link.startswith("/v2/images?") and "marker=" in next_link  # relative
    assert seen["upload: again once active"].status == 409
    assert seen["create: chosen id taken"].status == 409
    assert seen["create: id of a deleted image"].status == 409
    assert seen["members: owner accepts"].status == 403
    assert seen["list: member, pending hidden"].body["images"] == []
    assert seen["download: as a pending member"].status == 200
    for step in ("create: read-only status", "update: read-only checksum"):
        assert seen[step].status == 403, step
    assert seen["update: replace a missing property"].status == 409
