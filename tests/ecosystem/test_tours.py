"""python-glanceclient, openstackclient and openstacksdk against ``image-transfer emulator``,
configured only as a user configures them: each client's tour (``tour.py``) of an NHN cloud
(Keystone v2.0, ``--flavour nhn``) and of a private OpenStack (Keystone v3,
``--flavour glance``)."""

from __future__ import annotations

import pytest

from tests.ecosystem.clients import CLIENTS
from tests.ecosystem.conftest import KINDS, TourResult


@pytest.mark.parametrize("cloud", sorted(KINDS))
@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_tour(client: str, cloud: str, tours: dict[tuple[str, str], TourResult]) -> None:
    result = tours[client, cloud]
    if result.error is not None:
        pytest.fail(
            f"{client} on the {cloud} cloud failed after {result.seconds:.1f}s:\n"
            f"{''.join(result.steps)}\n--- what the client showed ---\n{result.transcript()}",
            pytrace=False,
        )
    assert len(result.client.log) >= 15  # every step ran
