"""The documents an Image API region serves besides images: the version document (Glance's
version negotiation) and the JSON schemas ``/v2/schemas/{image,images,member,members}``.

Version negotiation, as Glance 33 does it before the token check: ``/versions`` (and anything
under it) is the version list with 200; otherwise the first path segment must be a version
Glance serves (``v2``, ``v2.0`` ... ``v2.17`` as it is configured here), which stands for
``/v2``; anything else, ``/`` included, is the version list with 300 Multiple Choices.

The schemas are Glance 33's, as served by the interop harness's Glance (``glance_schemas.json``);
the ``nhn`` flavour's image schema adds the seed's NHN properties and uses its visibilities.
"""

from __future__ import annotations

import copy
import functools
import json
from importlib import resources
from typing import Any

from aiohttp import web

from transfer.emulator.flavours import Flavour
from transfer.emulator.responses import json_response

#: The versions listed, in Glance's order (with ``enabled_backends`` set, no image cache).
_LISTED = (
    ("v2.15", "SUPPORTED"),
    ("v2.13", "SUPPORTED"),
    ("v2.12", "SUPPORTED"),
    ("v2.11", "SUPPORTED"),
    ("v2.10", "SUPPORTED"),
    ("v2.9", "SUPPORTED"),
    ("v2.8", "SUPPORTED"),
    ("v2.17", "CURRENT"),
    *((f"v2.{minor}", "SUPPORTED") for minor in range(7, -1, -1)),
)
#: Path prefixes that name the v2 API.
VERSION_PREFIXES = frozenset({"v2", *(version for version, _ in _LISTED)})
#: The route pattern of the version segment.
VERSION_SEGMENT = "{api_version:v2(?:\\.(?:[0-9]|1[0-35]|17))?}"

SCHEMA_NAMES = ("image", "images", "member", "members")


def version_document(request: web.Request, *, explicit: bool) -> web.Response:
    """The version list, with links to this region as the request's Host names it."""
    href = f"{request.scheme}://{request.host}/v2/"
    versions = [
        {"id": version, "status": status, "links": [{"rel": "self", "href": href}]}
        for version, status in _LISTED
    ]
    return json_response({"versions": versions}, status=200 if explicit else 300)


def first_segment(path: str) -> str:
    return path.lstrip("/").split("/", 1)[0]


@functools.cache
def _glance_schemas() -> dict[str, Any]:
    text = resources.files("transfer.emulator").joinpath("glance_schemas.json").read_text()
    schemas: dict[str, Any] = json.loads(text)
    return schemas


@functools.cache
def schemas_for(flavour: Flavour) -> dict[str, Any]:
    """The four schemas as this flavour's regions serve them."""
    schemas = copy.deepcopy(_glance_schemas())
    image = schemas["image"]
    image["properties"]["visibility"]["enum"] = list(flavour.schema_visibilities)
    for name, choices in flavour.schema_extras:
        prop: dict[str, Any] = {"type": "string", "description": f"NHN Cloud property {name}"}
        if choices:
            prop["enum"] = list(choices)
        image["properties"][name] = prop
    schemas["images"]["properties"]["images"]["items"] = copy.deepcopy(image)
    return schemas
