"""What the ``images`` subcommands print: images and members as rows and records, through
``transfer.cli.output`` (``-f table|json|value|csv``, ``--column``).

The columns are the Image API's own key names.  An image's free-form properties (every key
outside Glance's schema) are one column, ``properties``, a JSON object: the set of keys
differs from image to image, and a column name has to be known before the call.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from transfer.cli.output import (
    RECORD_FORMATS,
    add_output_options,
    cell,
    print_record,
    print_rows,
    select,
    table,
)
from transfer.models import Image, Member
from transfer.streams import human_bytes

IMAGE_COLUMNS = (
    "id",
    "name",
    "status",
    "visibility",
    "size",
    "disk_format",
    "container_format",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "owner",
    "protected",
    "min_disk",
    "min_ram",
    "virtual_size",
    "tags",
    "created_at",
    "updated_at",
    "properties",
)
#: The columns of ``images list`` (and of its value and csv output when none is chosen).
IMAGE_LIST_COLUMNS = ("id", "name", "status", "visibility", "size", "disk_format")
MEMBER_COLUMNS = ("image_id", "member_id", "status", "created_at", "updated_at")
MEMBER_LIST_COLUMNS = ("member_id", "status", "created_at", "updated_at")


def add_image_list_output(parser: argparse.ArgumentParser) -> None:
    add_output_options(parser, IMAGE_COLUMNS)


def add_image_record_output(parser: argparse.ArgumentParser) -> None:
    add_output_options(parser, IMAGE_COLUMNS, formats=RECORD_FORMATS)


def add_member_list_output(parser: argparse.ArgumentParser) -> None:
    add_output_options(parser, MEMBER_COLUMNS)


def add_member_record_output(parser: argparse.ArgumentParser) -> None:
    add_output_options(parser, MEMBER_COLUMNS, formats=RECORD_FORMATS)


def image_row(image: Image) -> dict[str, Any]:
    row = {c: image.raw.get(c) for c in IMAGE_COLUMNS if c != "properties"}
    row["properties"] = dict(sorted(image.properties.items()))
    return row


def _image_json(image: Image, columns: Sequence[str] | None) -> dict[str, Any]:
    if columns is None:
        return dict(sorted(image.raw.items()))
    return select(image_row(image), columns)


def print_images(args: argparse.Namespace, images: Sequence[Image]) -> None:
    def human() -> str:
        return table(
            ("ID", "NAME", "STATUS", "VISIBILITY", "SIZE", "DISK"),
            [
                (
                    i.id,
                    cell(i.name),
                    i.status,
                    i.visibility,
                    "-" if i.size is None else human_bytes(i.size),
                    cell(i.disk_format),
                )
                for i in images
            ],
        )

    print_rows(
        args,
        [image_row(i) for i in images],
        default=IMAGE_LIST_COLUMNS,
        human=human,
        document=lambda columns: {"images": [_image_json(i, columns) for i in images]},
    )


def _fields(data: Mapping[str, Any]) -> str:
    width = max((len(k) for k in data), default=0)
    return "\n".join(f"{key.ljust(width)}  {cell(data[key])}".rstrip() for key in sorted(data))


def print_image(args: argparse.Namespace, image: Image) -> None:
    print_record(
        args,
        image_row(image),
        default=IMAGE_COLUMNS,
        human=lambda: _fields(image.raw),
        document=lambda columns: {"image": _image_json(image, columns)},
    )


def _member_json(member: Member, columns: Sequence[str] | None) -> dict[str, Any]:
    if columns is None:
        return dict(sorted(member.raw.items()))
    return select(member.raw, columns)


def print_members(args: argparse.Namespace, members: Sequence[Member]) -> None:
    print_rows(
        args,
        [dict(m.raw) for m in members],
        default=MEMBER_LIST_COLUMNS,
        human=lambda: table(
            ("MEMBER", "STATUS", "CREATED", "UPDATED"),
            [(m.member_id, m.status, cell(m.created_at), cell(m.updated_at)) for m in members],
        ),
        document=lambda columns: {"members": [_member_json(m, columns) for m in members]},
    )


def print_member(args: argparse.Namespace, member: Member) -> None:
    print_record(
        args,
        dict(member.raw),
        default=MEMBER_COLUMNS,
        human=lambda: _fields(member.raw),
        document=lambda columns: {"member": _member_json(member, columns)},
    )
