"""The engine against hostile servers: a job whose source is a region that misbehaves.

A broken download fails its own image and no other; a broken listing, token answer or catalog
stops the run with one clear line and exit code 3.  Throughout, the token and the password go
nowhere but home: a foreign server records what reaches it, and nothing may.  The runs are the
real command line as child processes; the retryable listing faults run the engine in this
process with a short retry budget (the command line's budget is minutes long).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import ssl
import subprocess
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from tests.client.test_hostile_servers import FAST
from tests.reliability.hostile import (
    DOWNLOADS,
    IDENTITIES,
    SOURCE_PASSWORD,
    TOKEN,
    Foreign,
    HostileCloud,
    Outcome,
    SourceImage,
    cli,
    every_byte,
    fill,
    leaks,
    password_cloud,
    token_cloud,
    write_config,
)
from transfer.cloud.sessions import open_clouds
from transfer.config.loader import load_config
from transfer.emulator import Emulator, tenant_from_name
from transfer.engine.planning import build_plan
from transfer.errors import ServerError, TransferError, TransportError
from transfer.journal.sqlite import SqliteJournal

DST = tenant_from_name("dst", "dst@example.com", "dst-Pw-5c0ffee1")
ENV = {"REL_HOSTILE_TOKEN": TOKEN, "REL_HOSTILE_PW": SOURCE_PASSWORD, "REL_DST_PW": DST.password}
SECRETS = (TOKEN, SOURCE_PASSWORD, DST.password)
ERROR = "image-transfer: error: "

_T = TypeVar("_T")


async def limited(coros: Sequence[Awaitable[_T]], limit: int = 3) -> list[_T]:
    """Await all, at most ``limit`` at once (child processes share two cores)."""
    gate = asyncio.Semaphore(limit)

    async def one(coro: Awaitable[_T]) -> _T:
        async with gate:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


def config_for(folder: Path, emu: Emulator, source_cloud: str) -> Path:
    return write_config(
        folder,
        source_cloud,
        identity_url=emu.identity_url,
        dst_tenant=DST.tenant_id,
        dst_user=DST.username,
    )


def copies_in(emu: Emulator) -> dict[str, list[dict[str, object]]]:
    """The dst tenant's images in KR1, by the source id their marker names."""
    found: dict[str, list[dict[str, object]]] = {}
    for record in emu.list_all("KR1"):
        if record["owner"] == DST.tenant_id:
            found.setdefault(str(record.get("image_transfer_source_id")), []).append(record)
    return found


# -- one image, one broken download ---------------------------------------------------------------

#: What each broken download must say in the image's error, and whether the image is tried again.
DOWNLOAD_ERRORS: dict[str, tuple[str, bool]] = {
    "truncated": (r"cut short after \d+ of \d+ bytes", True),
    "short-content-length": (r"received \d+ of the expected \d+ bytes", True),
    "longer-than-declared": (r"received more than the expected \d+ bytes", True),
    "content-md5-mismatch": (r"Content-MD5 [0-9a-f]{32} differs from its checksum", True),
    "content-md5-unreadable": (r"unreadable Content-MD5 header 'not-a-digest'", False),
    "corrupt-bytes": (r"checksum", True),
    "html-200": (r"received \d+ of the expected \d+ bytes", True),
    "redirect-to-another-host": (r"302 \(a redirect to 127\.0\.0\.1\).* not followed", False),
    "huge-403-echoing-the-token": (r"403 download of \S+ not allowed for \*\*\*", False),
    "204-for-a-sized-image": (r"source served no data for image \S+ of size \d+", False),
    "206-from-the-wrong-offset": (r"asked for bytes from 0, the server sent them from 3", False),
    "404-gone-meanwhile": (r"404 No image found with ID", False),
}


def test_every_download_answer_has_an_expectation() -> None:
    assert set(DOWNLOAD_ERRORS) == set(DOWNLOADS) - {"ok"}


async def test_each_broken_download_fails_its_own_image_and_the_rest_are_copied(
    tmp_path: Path,
) -> None:
    good = [
        SourceImage("good-1", fill(300_000, 1)),
        SourceImage("good-2", fill(1_048_581, 2)),
        SourceImage("good-3", b""),
    ]
    broken = [
        SourceImage(f"bad-{n:02d}", fill(70_000 + n, 10 + n), download=name)
        for n, name in enumerate(DOWNLOAD_ERRORS)
    ]
    async with (
        Foreign().running() as foreign,
        HostileCloud(foreign, [*good, *broken]).running() as cloud,
        Emulator(regions=("KR1",), tenants=(DST,)) as emu,
    ):
        config = config_for(tmp_path, emu, token_cloud(cloud.endpoint("images")))
        result = await cli(
            "run", "-c", str(config), "--no-progress", "--report", "report.json",
            cwd=tmp_path, env=ENV,
        )  # fmt: skip

        assert result.code == 1, result.err
        assert "Traceback" not in result.err
        report = json.loads((tmp_path / "report.json").read_text())
        outcomes = {item["source_id"]: item for item in report["items"]}
        assert {i.id: outcomes[i.id]["outcome"] for i in good} == dict.fromkeys(
            (i.id for i in good), "copied"
        )
        wrong = []
        for image in broken:
            item = outcomes[image.id]
            pattern, _ = DOWNLOAD_ERRORS[image.download]
            error = item.get("error") or ""
            if item["outcome"] != "failed" or not re.search(pattern, error) or len(error) > 600:
                wrong.append(f"{image.download}: {item['outcome']}: {error[:300]!r}")
        assert not wrong, "\n".join(wrong)

        # On the target: one faithful copy of each good image, nothing of the broken ones.
        held = copies_in(emu)
        for image in good:
            records = held.pop(image.id, [])
            assert [(r["status"], r["checksum"]) for r in records] == [
                ("active", hashlib.md5(image.data).hexdigest())
            ], image.id
        assert held == {}, {k: [(r["id"], r["status"]) for r in v] for k, v in held.items()}

        # An image whose answer cannot get better is asked for once; the others again.
        for image in broken:
            tries = cloud.requests_to("images").count(f"/images/v2/images/{image.id}/file")
            retried = DOWNLOAD_ERRORS[image.download][1]
            assert tries >= 2 if retried else tries == 1, (image.download, tries)

        assert foreign.recorder.requests == []
        written: dict[str, bytes | str] = {"stdout": result.out, "stderr": result.err}
        written.update(every_byte(tmp_path))
        assert leaks(SECRETS, written) == []


async def test_a_run_whose_only_failures_are_transient_exits_4(tmp_path: Path) -> None:
    images = [SourceImage("good-1", fill(50_000, 1)), SourceImage("cut-1", fill(90_000, 2))]
    images[1].download = "truncated"
    async with (
        Foreign().running() as foreign,
        HostileCloud(foreign, images).running() as cloud,
        Emulator(regions=("KR1",), tenants=(DST,)) as emu,
    ):
        config = config_for(tmp_path, emu, token_cloud(cloud.endpoint("images")))
        result = await cli("run", "-c", str(config), "--no-progress", cwd=tmp_path, env=ENV)
        assert result.code == 4, result.out + result.err
        assert list(copies_in(emu)) == ["good-1"]
        # The next run, once the source behaves, copies the rest.
        images[1].download = "ok"
        again = await cli("run", "-c", str(config), "--no-progress", cwd=tmp_path, env=ENV)
        assert again.code == 0, again.out + again.err
        assert sorted(copies_in(emu)) == ["cut-1", "good-1"]


# -- the run stops: a broken listing, token answer or catalog --------------------------------

#: case -> what the one error line says.  Listing cases use a token; identity cases a password.
LISTING_ERRORS: dict[str, str] = {
    "invalid-json": r"GET /invalid-json/v2/images: the server answered 200 with a body that is "
    r"not JSON",
    "html-200": r"GET /html-200/v2/images: .*not JSON: '.*Maintenance",
    "token-in-html": r"GET /token-in-html/v2/images: .*not JSON: '.*session \*\*\* is not welcome",
    "no-images-key": r"GET /no-images-key/v2/images: the answer has no 'images' list",
    "json-array": r"GET /json-array/v2/images: the answer has no 'images' list",
    "image-without-id": r"GET /image-without-id/v2/images\b.*without an 'id'",
    "image-without-status": r"GET /image-without-status/v2/images\b.*a1 has no 'status'",
    "size-not-a-number": r"GET /size-not-a-number/v2/images\b.*'size' should be an integer",
    "tags-a-string": r"GET /tags-a-string/v2/images\b.*a1 has malformed 'tags'",
    "next-to-another-host": r"the 'next' link points to another host \(127\.0\.0\.1\)",
    "next-loops": r"the 'next' link repeats itself",
    "next-a-number": r"malformed 'next' link 42",
    "redirect-to-another-host": r"GET /redirect-to-another-host/v2/images: the server answered "
    r"302 \(a redirect to 127\.0\.0\.1\)",
    "huge-error-body": r"GET /huge-error-body/v2/images: 403 forbidden for \*\*\*",
    "token-refused": r"pre-issued token for cloud 'hostile' was refused",
    "members-not-json": r"GET /members-not-json/v2/images/s1/members: .*not JSON",
}
#: Listings that give a good image before they break: a good first page whose ``next`` link
#: is not, or a page whose shared image's members are garbage.
BREAK_AFTER_A_GOOD_PAGE = (
    "next-to-another-host",
    "next-loops",
    "next-a-number",
    "members-not-json",
)
IDENTITY_ERRORS: dict[str, str] = {
    "token-without-expires": r"the token answer from 127\.0\.0\.1 has no readable 'expires'",
    "token-already-expired": r"carries a token that has already expired",
    "catalog-without-the-region": r"cloud 'hostile': no image endpoint for region 'KR1'; the "
    r"catalog lists JP1",
    "no-catalog": r"cloud 'hostile': no image endpoint for region 'KR1'; the catalog lists none",
    "identity-html-200": r"the token answer from 127\.0\.0\.1 is not JSON",
    "identity-redirect": r"307",
    "identity-refuses-and-quotes": r"the credentials for cloud 'hostile' were refused",
}


def test_every_identity_answer_has_an_expectation() -> None:
    assert set(IDENTITY_ERRORS) == set(IDENTITIES)


async def test_a_broken_listing_token_or_catalog_stops_the_run_with_one_line_and_exit_3(
    tmp_path: Path,
) -> None:
    async with (
        Foreign().running() as foreign,
        HostileCloud(foreign).running() as cloud,
        Emulator(regions=("KR1",), tenants=(DST,)) as emu,
        Emulator(regions=("KR1",), tenants=(DST,)) as after_a_good_page,
    ):
        cases: list[tuple[str, str, str]] = []
        for case, pattern in LISTING_ERRORS.items():
            cases.append((case, token_cloud(cloud.endpoint(case)), pattern))
        for case, pattern in IDENTITY_ERRORS.items():
            cases.append((case, password_cloud(f"{cloud.endpoint(case)}/v2.0"), pattern))

        async def one(case: str, source: str) -> Outcome:
            target = after_a_good_page if case in BREAK_AFTER_A_GOOD_PAGE else emu
            config = config_for(tmp_path / case, target, source)
            return await cli("run", "-c", str(config), "--no-progress", cwd=config.parent, env=ENV)

        results = await limited([one(case, source) for case, source, _ in cases])

        wrong = []
        for (case, _, pattern), result in zip(cases, results, strict=True):
            lines = [line for line in result.err.splitlines() if line.startswith(ERROR)]
            said = lines[0][len(ERROR) :] if len(lines) == 1 else repr(result.err[-500:])
            if (
                result.code != 3
                or "Traceback" in result.err
                or len(lines) != 1
                or not re.search(pattern, said)
                or len(said) > 600
            ):
                wrong.append(f"{case}: exit {result.code}: {said[:400]}")
            if leaks(SECRETS, {"stdout": result.out, "stderr": result.err}):
                wrong.append(f"{case}: a secret in the output")
        assert not wrong, "\n".join(wrong)
        assert foreign.recorder.requests == []  # neither a token nor a password left home
        assert emu.counters("KR1")["requests"].get("create", 0) == 0
        # A run works a source's images as they are listed: a listing that breaks after a good
        # image has had that image started, once for all these cases (its target id is the
        # same in each); it never got its bytes from the hostile source.
        made = after_a_good_page.list_all("KR1")
        assert [(r["name"], r["status"]) for r in made] in ([], [("a1", "queued")]), made


@pytest.mark.parametrize(
    ("case", "error", "pattern"),
    [
        ("truncated", TransportError, r"GET /truncated/v2/images: the body from .* cut short"),
        ("503-huge-body", ServerError, r"GET /503-huge-body/v2/images: 503 overloaded"),
        ("hang-up", TransportError, r"127\.0\.0\.1:\d+ closed the connection"),
    ],
)
async def test_a_transient_listing_fault_is_retried_within_budget_then_stops_the_plan(
    case: str, error: type[TransferError], pattern: str, tmp_path: Path
) -> None:
    async with (
        Foreign().running() as foreign,
        HostileCloud(foreign).running() as cloud,
        Emulator(regions=("KR1",), tenants=(DST,)) as emu,
    ):
        path = config_for(tmp_path, emu, token_cloud(cloud.endpoint(case)))
        config = load_config(path, environ=ENV)
        async with (
            SqliteJournal(config.journal.path) as journal,
            open_clouds(config, FAST) as clouds,
        ):
            with pytest.raises(error) as caught:
                await build_plan(config, config.jobs["pull"], clouds, journal)
        message = str(caught.value)
        assert re.search(pattern, message), message
        assert f"gave up after {FAST.attempts} attempts" in message
        assert len(message) < 600 and TOKEN not in message
        # aiohttp itself repeats an idempotent request once on a dropped keep-alive connection.
        assert FAST.attempts <= len(cloud.requests_to(case)) <= 2 * FAST.attempts
        assert foreign.recorder.requests == []


# -- TLS: verified unless the config says otherwise, and then warned -------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_an_untrusted_certificate_stops_the_job_unless_insecure_which_is_warned(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    image = SourceImage("tls-1", fill(20_000, 7))
    async with (
        Foreign().running() as foreign,
        HostileCloud(foreign, [image]).running(ssl_context=server_side) as cloud,
        Emulator(regions=("KR1",), tenants=(DST,)) as emu,
    ):
        assert cloud.url.startswith("https://")
        strict = config_for(tmp_path / "strict", emu, token_cloud(cloud.endpoint("strict-region")))
        lax = config_for(
            tmp_path / "lax", emu, token_cloud(cloud.endpoint("images"), insecure=True)
        )
        refused, accepted = await limited(
            [
                cli("run", "-c", str(strict), "--no-progress", cwd=strict.parent, env=ENV),
                cli("run", "-c", str(lax), "--no-progress", cwd=lax.parent, env=ENV),
            ]
        )
        # Verified by default: nothing was sent, the run stops at once.
        assert refused.code == 3, refused.err
        assert re.search(r"the TLS certificate of 127\.0\.0\.1:\d+ is not trusted", refused.err)
        assert "Traceback" not in refused.err and "warning" not in refused.err
        assert cloud.requests_to("strict-region") == []
        # insecure = true works, and says so before anything else happens.
        assert accepted.code == 0, accepted.err
        first = accepted.err.splitlines()[0]
        assert first == (
            f"image-transfer: warning: {lax}: clouds.hostile.insecure: "
            "TLS certificate verification is disabled"
        ), accepted.err
        assert list(copies_in(emu)) == ["tls-1"]
        assert leaks(SECRETS, {"out": refused.out + accepted.out, "err": refused.err}) == []
