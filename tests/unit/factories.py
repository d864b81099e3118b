"""Plain-data builders for unit tests: images as the API would list them."""

from __future__ import annotations

import hashlib
from typing import Any

from transfer.config.settings import CopyConfig, Endpoint, JobConfig
from transfer.models import Image


def image(
    image_id: str,
    *,
    name: str | None = "img",
    status: str = "active",
    data: bytes | None = b"",
    visibility: str = "private",
    tags: tuple[str, ...] = (),
    protected: bool = False,
    **extra: Any,
) -> Image:
    """An image; ``data`` sets size and checksum (None: an image without data)."""
    raw: dict[str, Any] = {
        "id": image_id,
        "name": name,
        "status": status,
        "visibility": visibility,
        "owner": "tenant-a",
        "size": None if data is None else len(data),
        "checksum": None if data is None else hashlib.md5(data).hexdigest(),
        "os_hash_algo": None if data is None else "sha512",
        "os_hash_value": None if data is None else hashlib.sha512(data).hexdigest(),
        "disk_format": "qcow2",
        "container_format": "bare",
        "protected": protected,
        "min_disk": 1,
        "min_ram": 0,
        "tags": list(tags),
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "self": f"/v2/images/{image_id}",
        "file": f"/v2/images/{image_id}/file",
        "schema": "/v2/schemas/image",
    }
    raw.update(extra)
    return Image.from_api(raw)


def job(
    name: str = "job1",
    *,
    targets: tuple[str, ...] = ("dst/KR2",),
    copy: CopyConfig | None = None,
) -> JobConfig:
    return JobConfig(
        name=name,
        source=Endpoint(cloud="src", region="KR1"),
        targets=tuple(
            Endpoint(cloud=key.split("/")[0], region=key.split("/")[1]) for key in targets
        ),
        copy=copy or CopyConfig(),
    )
