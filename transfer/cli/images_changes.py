"""What the ``images`` command sends to change an image: the fields of ``create`` and the JSON
Patch of ``update`` (``--set``, ``--unset``, ``--json-patch``), checked before any request."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from transfer.errors import ConfigError
from transfer.models import CORE_KEYS, PatchOp, is_reserved_key


def _key_value(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
    return key, value


def create_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The body of ``POST /v2/images`` from ``images create``'s flags."""
    fields: dict[str, Any] = {
        "name": args.name,
        "os_type": args.os_type,
        "disk_format": args.disk_format,
        "container_format": args.container_format,
    }
    for item in args.property:
        key, value = _key_value(item, "--property")
        if is_reserved_key(key) or key in CORE_KEYS:
            raise ConfigError(f"--property {key}: a field of its own, not a free-form property")
        fields[key] = value
    for key, value in (
        ("visibility", args.visibility),
        ("min_disk", args.min_disk),
        ("min_ram", args.min_ram),
        ("id", args.chosen_id),
    ):
        if value is not None:
            fields[key] = value
    if args.tag:
        fields["tags"] = list(args.tag)
    return fields


_INT_FIELDS = frozenset({"min_disk", "min_ram"})
_BOOL_FIELDS = frozenset({"protected", "os_hidden"})


def _typed_value(key: str, value: str) -> Any:
    if key in _INT_FIELDS:
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"--set {key}: expected an integer, got {value!r}") from None
    if key in _BOOL_FIELDS:
        if value.lower() not in ("true", "false"):
            raise ConfigError(f"--set {key}: expected true or false, got {value!r}")
        return value.lower() == "true"
    return value


def patch_from_args(args: argparse.Namespace) -> list[PatchOp]:
    ops: list[PatchOp] = []
    for item in args.set:
        key, value = _key_value(item, "--set")
        if is_reserved_key(key):
            raise ConfigError(f"--set {key}: that field is read-only")
        # Schema fields always exist (replace); properties may not yet (add sets either way).
        op: PatchOp = {
            "op": "replace" if key in CORE_KEYS else "add",
            "path": f"/{key}",
            "value": _typed_value(key, value),
        }
        ops.append(op)
    for key in args.unset:
        if key in CORE_KEYS:
            raise ConfigError(f"--unset {key}: a field of the image schema cannot be removed")
        ops.append({"op": "remove", "path": f"/{key}"})
    if args.json_patch is not None:
        ops.extend(_read_json_patch(args.json_patch))
    if not ops:
        raise ConfigError("nothing to update: give --set K=V, --unset K or --json-patch FILE")
    return ops


def _read_json_patch(path: Path) -> list[PatchOp]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--json-patch {path}: cannot read it: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"--json-patch {path}: not valid JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ConfigError(f"--json-patch {path}: expected a JSON list of operations")
    ops: list[PatchOp] = []
    for number, item in enumerate(data, 1):
        if (
            not isinstance(item, dict)
            or item.get("op") not in ("add", "replace", "remove")
            or not isinstance(item.get("path"), str)
            or (item["op"] != "remove" and "value" not in item)
        ):
            raise ConfigError(
                f"--json-patch {path}: operation {number} should be "
                '{"op": "add"|"replace"|"remove", "path": "/key", "value": ...}'
            )
        op: PatchOp = {"op": item["op"], "path": item["path"]}
        if "value" in item:
            op["value"] = item["value"]
        ops.append(op)
    return ops
