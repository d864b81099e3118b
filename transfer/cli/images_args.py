"""The ``images`` command's arguments: the authentication flags, one parser per subcommand, its
help and examples.  The subcommands' functions come from ``transfer.cli.images`` by name, so
this module needs nothing of what they call."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transfer.cli.images_auth import add_os_cloud_option
from transfer.cli.images_output import (
    add_image_list_output,
    add_image_record_output,
    add_member_list_output,
    add_member_record_output,
)
from transfer.cli.output import ConfigOrColumn, config_option_help
from transfer.models import MEMBER_STATUS_FILTERS, MEMBER_STATUSES

IMAGE_HELP = "the image's id or name (a name must belong to one image only)"
MEMBER_HELP = "the member's tenant (project) id"
_PROG = "image-transfer images"


def _add_auth_options(parser: argparse.ArgumentParser, *, nested: bool) -> None:
    # Nested parsers repeat the options so they may also follow the subcommand; SUPPRESS keeps
    # a nested parser from overwriting a value given before the subcommand with its default.
    default: Any = argparse.SUPPRESS if nested else None
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS if nested else False,
        help="log at debug level, as the job commands do (every HTTP request among them)",
    )
    group = parser.add_argument_group("authentication (flags win over OS_* variables)")
    group.add_argument(
        "-c",
        "--config",
        action=ConfigOrColumn,
        metavar="FILE",
        default=default,
        help=config_option_help("take the credentials of --cloud from this TOML config"),
    )
    group.add_argument(
        "--cloud", metavar="NAME", default=default, help="a [clouds.NAME] table of --config"
    )
    add_os_cloud_option(group, default=default)
    group.add_argument(
        "--identity-url",
        default=default,
        help="Keystone URL ending in /v2.0 or /v3, or its root to discover (OS_AUTH_URL)",
    )
    group.add_argument("--tenant-id", default=default, help="tenant id (OS_TENANT_ID)")
    group.add_argument("--tenant-name", default=default, help="tenant name (OS_TENANT_NAME)")
    group.add_argument("--username", default=default, help="API user (OS_USERNAME)")
    group.add_argument(
        "--password-env", metavar="VAR", default=default, help="read the API password from $VAR"
    )
    group.add_argument(
        "--password-file", metavar="PATH", default=default, help="read the API password from PATH"
    )
    group.add_argument(
        "--token-env",
        metavar="VAR",
        default=default,
        help="use the pre-issued token in $VAR (OS_AUTH_TOKEN); needs an endpoint",
    )
    group.add_argument(
        "--endpoint",
        metavar="REGION=URL",
        action="append",
        default=default,
        help="image endpoint of a region, overriding the catalog (OS_IMAGE_URL); repeatable",
    )
    group.add_argument(
        "--region",
        default=default,
        help="region, e.g. KR1 (default: the cloud's region_name, or OS_REGION_NAME)",
    )
    group.add_argument("--ca-bundle", metavar="PATH", default=default, help="CA file (OS_CACERT)")
    group.add_argument(
        "--insecure",
        action="store_true",
        default=argparse.SUPPRESS if nested else False,
        help="do not verify TLS certificates (prints a warning)",
    )


# Parents built once and shared: ``add_argument`` costs tens of microseconds (it formats each
# option to check it), and the subcommands would repeat the authentication flags some 300
# times per start.
@functools.cache
def _nested_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    _add_auth_options(parent, nested=True)
    return parent


@functools.cache
def _output_options(kind: str) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    _OUTPUTS[kind](parent)
    return parent


_OUTPUTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "images": add_image_list_output,
    "image": add_image_record_output,
    "members": add_member_list_output,
    "member": add_member_record_output,
}


class _Leaves:
    """Adds subcommand parsers that run ``actions[path]`` (``path``: "list", "members add")."""

    def __init__(self, actions: Mapping[str, object]) -> None:
        self._actions = actions

    def add(
        self,
        sub: Any,
        path: str,
        help_text: str,
        examples: list[str],
        *,
        output: str | None = None,
    ) -> argparse.ArgumentParser:
        parents = [_nested_options()]
        if output is not None:
            parents.append(_output_options(output))
        name = path.rsplit(" ", 1)[-1]
        parser: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=help_text, parents=parents
        )
        parser.epilog = "examples:\n" + "\n".join(f"  {_PROG} {e}" for e in examples)
        parser.set_defaults(images_action=self._actions[path])
        return parser


def configure(parser: argparse.ArgumentParser, actions: Mapping[str, object]) -> None:
    _add_auth_options(parser, nested=False)
    parser.epilog = (
        "examples:\n"
        f"  {_PROG} list -f value --column id --column name\n"
        f"  {_PROG} --region KR2 show ubuntu-22.04 -f json\n"
        f"  {_PROG} -c config.toml --cloud src --region KR1 list --all -f csv\n"
        f"  {_PROG} -v download ubuntu-22.04 ubuntu.qcow2"
    )
    sub = parser.add_subparsers(
        dest="images_command", metavar="SUBCOMMAND", parser_class=type(parser)
    )
    sub.required = True
    leaves = _Leaves(actions)
    # The order of these calls is the order of the subcommands in --help.
    _add_list(sub, leaves)
    _add_show_and_create(sub, leaves)
    _add_data(sub, leaves)
    _add_changes(sub, leaves)
    _add_members(sub, leaves, type(parser))


def _add_list(sub: Any, leaves: _Leaves) -> None:
    p = leaves.add(
        sub,
        "list",
        "list images (first --limit, or --all)",
        [
            "list --name ubuntu-22.04",
            "list --all --status active -f value --column id",
            "list --visibility shared --member-status pending",
            "list --tag golden -f csv --column name --column size --column checksum",
        ],
        output="images",
    )
    p.add_argument("--all", action="store_true", help="every image, however many pages")
    p.add_argument("--limit", type=_positive_int, default=100, help="at most N (default 100)")
    p.add_argument("--name", help="only images with exactly this name")
    p.add_argument(
        "--visibility",
        choices=("public", "private", "shared", "community", "all"),
        help="only images of this visibility (the API's default: all you may see)",
    )
    p.add_argument("--owner", metavar="TENANT_ID", help="only images owned by this tenant")
    p.add_argument("--status", help="only images in this status (queued, saving, active, ...)")
    p.add_argument("--size-min", type=_non_negative_int, metavar="BYTES", help="at least BYTES")
    p.add_argument("--size-max", type=_non_negative_int, metavar="BYTES", help="at most BYTES")
    p.add_argument(
        "--product",
        dest="nhncloud_product",
        metavar="PRODUCT",
        help="only NHN images of this product (compute|gpu)",
    )
    p.add_argument(
        "--sort-key", help="sort by this image field (name, size, created_at, ...) on the server"
    )
    p.add_argument("--sort-dir", choices=("asc", "desc"), help="sort direction (default: desc)")
    p.add_argument(
        "--member-status",
        choices=MEMBER_STATUS_FILTERS,
        help="images shared with you whose membership has this status",
    )
    p.add_argument("--tag", action="append", help="only images with this tag; repeatable")


def _add_show_and_create(sub: Any, leaves: _Leaves) -> None:
    p = leaves.add(
        sub,
        "show",
        "show one image",
        [
            "show ubuntu-22.04",
            "show 5d0c5b8e-6f3a-4d7b-9a57-2f0b1c4b9e11 -f json",
            "show ubuntu-22.04 -f value --column checksum",
        ],
        output="image",
    )
    p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)

    p = leaves.add(
        sub,
        "create",
        "create an image (and upload --file into it)",
        [
            "create --name web --os-type linux --disk-format qcow2 --file web.qcow2",
            "create --name empty --os-type windows --disk-format raw --property purpose=test",
        ],
        output="image",
    )
    p.add_argument("--name", required=True, help="the new image's name")
    p.add_argument(
        "--os-type", required=True, choices=("linux", "windows"), help="required by NHN Cloud"
    )
    p.add_argument("--disk-format", required=True, help="qcow2, raw, vmdk, iso, ...")
    p.add_argument("--container-format", default="bare", help="default: bare")
    p.add_argument(
        "--visibility", choices=("private", "shared"), help="default: the API's (private)"
    )
    p.add_argument("--min-disk", type=_non_negative_int, metavar="GB", help="minimum disk size")
    p.add_argument("--min-ram", type=_non_negative_int, metavar="MB", help="minimum memory")
    p.add_argument(
        "--property",
        action="append",
        metavar="K=V",
        default=[],
        help="a free-form property; repeatable",
    )
    p.add_argument("--tag", action="append", default=[], help="a tag; repeatable")
    p.add_argument("--id", dest="chosen_id", metavar="UUID", help="choose the image id")
    p.add_argument("--file", type=Path, metavar="PATH", help="upload this file after creating")


def _add_data(sub: Any, leaves: _Leaves) -> None:
    p = leaves.add(
        sub,
        "upload",
        "upload a file into a queued image (the MD5 is checked)",
        ["upload web web.qcow2"],
    )
    p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    p.add_argument("path", type=Path, metavar="PATH", help="the file to send")

    p = leaves.add(
        sub,
        "download",
        "download an image to PATH (resumes a partial PATH, verifies the MD5)",
        ["download ubuntu-22.04 ubuntu.qcow2"],
    )
    p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    p.add_argument(
        "path", type=Path, metavar="PATH", help="the file to write (a partial one is resumed)"
    )


def _add_changes(sub: Any, leaves: _Leaves) -> None:
    p = leaves.add(
        sub,
        "update",
        "change an image's fields and properties",
        [
            "update web --set min_disk=20 --set purpose=prod --unset draft",
            "update web --json-patch patch.json -f json",
        ],
        output="image",
    )
    p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    p.add_argument(
        "--set", action="append", default=[], metavar="K=V", help="set a field; repeatable"
    )
    p.add_argument(
        "--unset", action="append", default=[], metavar="K", help="remove a property; repeatable"
    )
    p.add_argument("--json-patch", type=Path, metavar="FILE", help="a JSON Patch list to apply")

    p = leaves.add(
        sub,
        "delete",
        "delete an image (a name must be unique: several matches are refused)",
        ["delete old-web", "delete 5d0c5b8e-6f3a-4d7b-9a57-2f0b1c4b9e11"],
    )
    p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)

    for name, verb in (("tag", "add a tag to"), ("untag", "remove a tag from")):
        p = leaves.add(sub, name, f"{verb} an image", [f"{name} web golden"])
        p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
        p.add_argument("tag", metavar="TAG", help="the tag")


def _add_members(sub: Any, leaves: _Leaves, parser_class: type[argparse.ArgumentParser]) -> None:
    members = sub.add_parser(
        "members",
        help="share images with other tenants",
        description="share images with other tenants",
        parents=[_nested_options()],
    )
    members.epilog = (
        "examples:\n"
        f"  {_PROG} members add web 7a2f0e5c9d1b4c3e8f6a0b1c2d3e4f5a\n"
        f"  {_PROG} members accept web\n"
        f"  {_PROG} members list web -f value --column member_id --column status"
    )
    msub = members.add_subparsers(
        dest="members_command", metavar="SUBCOMMAND", parser_class=parser_class
    )
    msub.required = True
    tenant = "7a2f0e5c9d1b4c3e8f6a0b1c2d3e4f5a"
    p = leaves.add(
        msub, "members list", "list an image's members", ["members list web"], output="members"
    )
    p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    for name, help_text in (
        ("show", "show one member"),
        ("add", "share an image with a tenant (as the owner)"),
        ("remove", "stop sharing (as the owner)"),
    ):
        output = None if name == "remove" else "member"
        p = leaves.add(
            msub, f"members {name}", help_text, [f"members {name} web {tenant}"], output=output
        )
        p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
        p.add_argument("member_id", metavar="MEMBER", help=MEMBER_HELP)
    for name, status in (("accept", "accepted"), ("reject", "rejected")):
        p = leaves.add(
            msub,
            f"members {name}",
            f"{name} a shared image (as the member tenant)",
            [f"members {name} web"],
            output="member",
        )
        p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
        p.add_argument("member_id", metavar="MEMBER", nargs="?", help="default: your own tenant")
        p.set_defaults(member_status=status)
    p = leaves.add(
        msub,
        "members set-status",
        "set a member's status (as the member)",
        [f"members set-status web {tenant} pending"],
        output="member",
    )
    p.add_argument("image", metavar="IMAGE", help=IMAGE_HELP)
    p.add_argument("member_id", metavar="MEMBER", help=MEMBER_HELP)
    p.add_argument(
        "member_status", metavar="STATUS", choices=MEMBER_STATUSES, help="accepted|pending|rejected"
    )


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("expected a non-negative integer")
    return value
