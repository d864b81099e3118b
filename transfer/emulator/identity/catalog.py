"""The service catalog (v2.0's and v3's shapes) and Keystone's version discovery documents."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transfer.emulator.identity.directory import stable_id

_MEDIA = {
    "v2.0": "application/vnd.openstack.identity-v2.0+json",
    "v3": "application/vnd.openstack.identity-v3+json",
}
# Keystone's ids and dates of the API versions (v3.14 is the current minor version).
_IDS = {"v2.0": "v2.0", "v3": "v3.14"}
_UPDATED = {"v2.0": "2014-04-17T00:00:00Z", "v3": "2020-04-07T00:00:00Z"}


def version_entry(root: str, version: str, served: Sequence[str]) -> dict[str, Any]:
    """One version's document; v2.0 is ``deprecated`` when v3 is served beside it."""
    status = "deprecated" if version == "v2.0" and "v3" in served else "stable"
    return {
        "id": _IDS[version],
        "status": status,
        "updated": _UPDATED[version],
        "links": [{"rel": "self", "href": f"{root}/{version}/"}],
        "media-types": [{"base": "application/json", "type": _MEDIA[version]}],
    }


def discovery(root: str, served: Sequence[str]) -> dict[str, Any]:
    """``GET /``: every served version, newest first, as Keystone lists them."""
    ordered = [v for v in ("v3", "v2.0") if v in served]
    return {"versions": {"values": [version_entry(root, v, served) for v in ordered]}}


def v2_catalog(root: str, regions: Mapping[str, str]) -> list[dict[str, Any]]:
    identity_url = root + "/v2.0"
    first_region = next(iter(regions), "")
    image_endpoints = [
        {
            "region": region,
            "publicURL": url,
            "internalURL": url,
            "adminURL": url,
            "id": stable_id("image", region),
        }
        for region, url in regions.items()
    ]
    return [
        {"type": "image", "name": "glance", "endpoints": image_endpoints, "endpoints_links": []},
        {
            "type": "identity",
            "name": "keystone",
            "endpoints": [
                {
                    "region": first_region,
                    "publicURL": identity_url,
                    "internalURL": identity_url,
                    "adminURL": identity_url,
                }
            ],
            "endpoints_links": [],
        },
    ]


def _v3_endpoints(service: str, urls: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "id": stable_id(f"{service}:{interface}", region),
            "interface": interface,
            "region": region,
            "region_id": region,
            "url": url,
        }
        for region, url in urls.items()
        for interface in ("public", "internal", "admin")
    ]


def v3_catalog(root: str, regions: Mapping[str, str]) -> list[dict[str, Any]]:
    first_region = next(iter(regions), "")
    return [
        {
            "type": "image",
            "name": "glance",
            "id": stable_id("service", "image"),
            "endpoints": _v3_endpoints("image", regions),
        },
        {
            "type": "identity",
            "name": "keystone",
            "id": stable_id("service", "identity"),
            "endpoints": _v3_endpoints("identity", {first_region: root + "/v3"}),
        },
    ]
