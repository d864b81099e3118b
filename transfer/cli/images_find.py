"""The image a command names: an id, or a name, as the openstack CLI accepts either.

An argument shaped like an image id (a UUID) is looked up as an id first, and as a name when
no image has that id; anything else is a name.  A name must be unique: with several images of
that name the command refuses and lists their ids (``delete NAME`` must never pick one).
"""

from __future__ import annotations

import re

from transfer.cloud.client import ImageClient
from transfer.errors import ImageLookupError, NotFound
from transfer.models import Image

_ID_SHAPE = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)

#: How many images of one name are listed at most (enough to show that the name is not unique).
_SHOWN = 20


def looks_like_id(text: str) -> bool:
    return bool(_ID_SHAPE.match(text))


async def _named(client: ImageClient, name: str) -> list[Image]:
    found: list[Image] = []
    listing = client.list_images(page_size=_SHOWN + 1, name=name)
    try:
        async for image in listing:
            found.append(image)
            if len(found) > _SHOWN:
                break
    finally:
        await listing.aclose()
    return found


async def find_image(client: ImageClient, ref: str) -> Image:
    """The one image whose id or name is ``ref``; ``ImageLookupError`` when there is none or
    the name is not unique (a 404 on an id-shaped ``ref`` that is no name either is re-raised,
    so the message shows the request that found nothing)."""
    not_found: NotFound | None = None
    if looks_like_id(ref):
        try:
            return await client.get_image(ref)
        except NotFound as exc:
            not_found = exc
    named = await _named(client, ref)
    if len(named) == 1:
        return named[0]
    if named:
        ids = ", ".join(i.id for i in named[:_SHOWN]) + (", ..." if len(named) > _SHOWN else "")
        raise ImageLookupError(
            f"{'more than ' + str(_SHOWN) if len(named) > _SHOWN else len(named)} images in "
            f"{client.region} are named {ref!r} ({ids}): give the id of the one you mean"
        )
    if not_found is not None:
        raise not_found
    raise ImageLookupError(f"no image named {ref!r} in {client.region}, nor with that id")


async def find_image_id(client: ImageClient, ref: str) -> str:
    """The id of the image ``ref`` names (one more GET than an id alone would need)."""
    return (await find_image(client, ref)).id
