"""The OpenStack conventions a cloud's credentials may come from: a ``clouds.yaml`` entry
(``os_cloud``) and the ``OS_*`` variables (``from_env``, and the ``images`` command).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transfer.config.settings import Secret


def clouds_yaml_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Our cloud keys from one ``clouds.yaml`` entry (openstacksdk's layout)."""
    auth = entry.get("auth") if isinstance(entry.get("auth"), Mapping) else {}
    assert isinstance(auth, Mapping)
    result: dict[str, Any] = {}
    for ours, theirs in (
        ("identity_url", ("auth_url",)),
        ("username", ("username",)),
        ("tenant_id", ("project_id", "tenant_id")),
        ("tenant_name", ("project_name", "tenant_name")),
    ):
        for key in theirs:
            if isinstance(auth.get(key), str) and auth[key]:
                result[ours] = auth[key]
                break
    if isinstance(auth.get("password"), str) and auth["password"]:
        result["password"] = Secret(auth["password"])
    elif isinstance(auth.get("token"), str) and auth["token"]:
        result["token"] = Secret(auth["token"])
    if isinstance(entry.get("cacert"), str):
        result["ca_bundle"] = entry["cacert"]
    if entry.get("verify") is False:
        result["insecure"] = True
    region = entry.get("region_name")
    override = entry.get("image_endpoint_override")
    if isinstance(region, str) and isinstance(override, str):
        result["endpoints"] = {region.upper(): override}
    return result


def openstack_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Our cloud keys from the ``OS_*`` variables the openstack CLI uses."""
    result: dict[str, Any] = {}
    for ours, names in (
        ("identity_url", ("OS_AUTH_URL",)),
        ("username", ("OS_USERNAME",)),
        ("tenant_id", ("OS_PROJECT_ID", "OS_TENANT_ID")),
        ("tenant_name", ("OS_PROJECT_NAME", "OS_TENANT_NAME")),
        ("ca_bundle", ("OS_CACERT",)),
    ):
        for name in names:
            if environ.get(name):
                result[ours] = environ[name]
                break
    if environ.get("OS_PASSWORD"):
        result["password"] = Secret(environ["OS_PASSWORD"])
    elif environ.get("OS_AUTH_TOKEN"):
        result["token"] = Secret(environ["OS_AUTH_TOKEN"])
    if environ.get("OS_IMAGE_URL") and environ.get("OS_REGION_NAME"):
        result["endpoints"] = {environ["OS_REGION_NAME"].upper(): environ["OS_IMAGE_URL"]}
    return result
