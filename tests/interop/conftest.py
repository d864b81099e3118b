"""Fixtures of the interop suite: real OpenStack Glance, installed in its own environment under
``~/.cache/image-transfer/interop/`` (built on first use, reused after), running as two regions
for the session.

Without access to the package index the environment cannot be built: the suite is then
skipped, saying why, unless ``IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from interop.environment import GlanceInstall, IndexUnreachable, ensure_glance
from interop.server import GlanceCloud

#: Tenants of the interop cloud: the migration's, and the differential tour's own (so the
#: tour's lists hold only what it made, whatever ran before it).
TENANTS = ("src", "dst", "partner", "outsider", "tour-owner", "tour-member", "tour-outsider")


Install = TypeVar("Install")


def require_all() -> bool:
    return os.environ.get("IMAGE_TRANSFER_REQUIRE_ALL_TESTS") == "1"


def install_or_skip(
    build: Callable[[], Install],
    *,
    required: bool | None = None,
    what: str = "real Glance",
) -> Install:
    """The environment ``build`` returns; a skip saying why when the index is out of reach
    (a failure when every test is ``required``, as CI says with
    IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1).  ``what`` names it in the message."""
    try:
        return build()
    except IndexUnreachable as exc:
        reason = f"{what} cannot be installed, the package index is unreachable: {exc}"
        if require_all() if required is None else required:
            pytest.fail(f"{reason}\n(IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1: no test may skip)")
        pytest.skip(f"{reason} (set IMAGE_TRANSFER_REQUIRE_ALL_TESTS=1 to fail instead)")


@pytest.fixture(scope="session")
def glance_install() -> GlanceInstall:
    return install_or_skip(ensure_glance)


@pytest.fixture(scope="package")
def glance(
    glance_install: GlanceInstall, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GlanceCloud]:
    """Two real Glance servers, regions KR1 and KR2, sharing the tenants in ``TENANTS``."""
    with GlanceCloud(
        glance_install, tmp_path_factory.mktemp("glance"), ("KR1", "KR2"), TENANTS
    ) as cloud:
        yield cloud
