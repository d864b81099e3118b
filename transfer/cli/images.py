"""The ``images`` command: every Image API call from the shell, one subcommand per call.

Its flags become ``Credentials`` over the ``OS_*`` environment in ``transfer.cli.images_auth``
(flags win; Keystone v2.0 or v3).  It owns the subcommands' output
(tables for people, ``--json`` for scripts), and the download/upload helpers a shell user needs
(progress on a terminal, resumable downloads, MD5 verification).  All HTTP goes through
``transfer.cloud.sessions.CloudSession`` and ``transfer.cloud.client.ImageClient``.

Exit codes: 0 done, 1 the API or a file said no, 2 a usage error, 3 the credentials or the
catalog failed (raised to ``transfer.cli``, which maps fatal errors).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from transfer.cli.images_auth import credentials_from_args, flag_value, region_from_args
from transfer.cli.logs import configure_logging
from transfer.cli.main import ExitCode
from transfer.cloud.client import IMAGE_FILTERS, ImageClient
from transfer.cloud.sessions import CloudSession
from transfer.config.loader import load_credentials
from transfer.config.settings import Credentials, LogLevel
from transfer.errors import ConfigError, IntegrityError, TransferError, TransportError
from transfer.models import (
    CORE_KEYS,
    MEMBER_STATUS_FILTERS,
    MEMBER_STATUSES,
    Image,
    Member,
    PatchOp,
    is_reserved_key,
)
from transfer.streams import human_bytes

__all__ = ["configure", "credentials_from_args", "region_from_args", "run", "run_with"]

Action = Callable[[argparse.Namespace, CloudSession, ImageClient], Awaitable[int]]

# -- arguments --------------------------------------------------------------------------------


def _add_auth_options(parser: argparse.ArgumentParser, *, nested: bool) -> None:
    # Nested parsers repeat the options so they may also follow the subcommand; SUPPRESS keeps
    # a nested parser from overwriting a value given before the subcommand with its default.
    default: Any = argparse.SUPPRESS if nested else None
    group = parser.add_argument_group("authentication (flags win over OS_* variables)")
    group.add_argument(
        "-c",
        "--config",
        type=Path,
        metavar="FILE",
        default=default,
        help="take the credentials of --cloud from this TOML config (as `run` does)",
    )
    group.add_argument(
        "--cloud", metavar="NAME", default=default, help="a [clouds.NAME] table of --config"
    )
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


@functools.cache
def _nested_options(json_output: bool) -> argparse.ArgumentParser:
    """``--json`` (when asked for) and the authentication options every subcommand repeats,
    built once and shared as a parent: ``add_argument`` costs tens of microseconds (it formats
    each option to check it), and the subcommands would repeat it some 300 times per start."""
    parent = argparse.ArgumentParser(add_help=False)
    if json_output:
        parent.add_argument("--json", action="store_true", help="print JSON for scripts")
    _add_auth_options(parent, nested=True)
    return parent


def _leaf(
    sub: Any, name: str, action: Action, help_text: str, *, json_output: bool = True
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, parents=[_nested_options(json_output)]
    )
    parser.set_defaults(images_action=action)
    return parser


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every HTTP request to stderr"
    )
    _add_auth_options(parser, nested=False)
    sub = parser.add_subparsers(
        dest="images_command", metavar="SUBCOMMAND", parser_class=type(parser)
    )
    sub.required = True
    # The order of these calls is the order of the subcommands in --help.
    _add_list(sub)
    _add_show_and_create(sub)
    _add_data(sub)
    _add_changes(sub)
    _add_members(sub, type(parser))


def _add_list(sub: Any) -> None:
    p = _leaf(sub, "list", _cmd_list, "list images (first --limit, or --all)")
    p.add_argument("--all", action="store_true", help="every image, however many pages")
    p.add_argument("--limit", type=_positive_int, default=100, help="at most N (default 100)")
    p.add_argument("--name")
    p.add_argument("--visibility", choices=("public", "private", "shared", "community", "all"))
    p.add_argument("--owner", metavar="TENANT_ID")
    p.add_argument("--status")
    p.add_argument("--size-min", type=_non_negative_int, metavar="BYTES")
    p.add_argument("--size-max", type=_non_negative_int, metavar="BYTES")
    p.add_argument("--product", dest="nhncloud_product", metavar="PRODUCT", help="compute|gpu")
    p.add_argument("--sort-key")
    p.add_argument("--sort-dir", choices=("asc", "desc"))
    p.add_argument("--member-status", choices=MEMBER_STATUS_FILTERS)
    p.add_argument("--tag", action="append", help="only images with this tag; repeatable")


def _add_show_and_create(sub: Any) -> None:
    p = _leaf(sub, "show", _cmd_show, "show one image")
    p.add_argument("image_id", metavar="ID")

    p = _leaf(sub, "create", _cmd_create, "create an image (and upload --file into it)")
    p.add_argument("--name", required=True)
    p.add_argument("--os-type", required=True, choices=("linux", "windows"))
    p.add_argument("--disk-format", required=True, help="qcow2, raw, vmdk, iso, ...")
    p.add_argument("--container-format", default="bare", help="default: bare")
    p.add_argument("--visibility", choices=("private", "shared"))
    p.add_argument("--min-disk", type=_non_negative_int, metavar="GB")
    p.add_argument("--min-ram", type=_non_negative_int, metavar="MB")
    p.add_argument("--property", action="append", metavar="K=V", default=[], help="repeatable")
    p.add_argument("--tag", action="append", default=[], help="repeatable")
    p.add_argument("--id", dest="chosen_id", metavar="UUID", help="choose the image id")
    p.add_argument("--file", type=Path, metavar="PATH", help="upload this file after creating")


def _add_data(sub: Any) -> None:
    p = _leaf(sub, "upload", _cmd_upload, "upload a file into a queued image", json_output=False)
    p.add_argument("image_id", metavar="ID")
    p.add_argument("path", type=Path, metavar="PATH")

    p = _leaf(
        sub,
        "download",
        _cmd_download,
        "download an image to PATH (resumes a partial PATH, verifies the MD5)",
        json_output=False,
    )
    p.add_argument("image_id", metavar="ID")
    p.add_argument("path", type=Path, metavar="PATH")


def _add_changes(sub: Any) -> None:
    p = _leaf(sub, "update", _cmd_update, "change an image's fields and properties")
    p.add_argument("image_id", metavar="ID")
    p.add_argument("--set", action="append", default=[], metavar="K=V", help="repeatable")
    p.add_argument("--unset", action="append", default=[], metavar="K", help="repeatable")
    p.add_argument("--json-patch", type=Path, metavar="FILE", help="a JSON Patch list to apply")

    p = _leaf(sub, "delete", _cmd_delete, "delete an image", json_output=False)
    p.add_argument("image_id", metavar="ID")

    p = _leaf(sub, "tag", _cmd_tag, "add a tag to an image", json_output=False)
    p.add_argument("image_id", metavar="ID")
    p.add_argument("tag", metavar="TAG")

    p = _leaf(sub, "untag", _cmd_untag, "remove a tag from an image", json_output=False)
    p.add_argument("image_id", metavar="ID")
    p.add_argument("tag", metavar="TAG")


def _add_members(sub: Any, parser_class: type[argparse.ArgumentParser]) -> None:
    members = sub.add_parser(
        "members", help="share images with other tenants", parents=[_nested_options(False)]
    )
    msub = members.add_subparsers(
        dest="members_command", metavar="SUBCOMMAND", parser_class=parser_class
    )
    msub.required = True
    p = _leaf(msub, "list", _cmd_members_list, "list an image's members")
    p.add_argument("image_id", metavar="ID")
    p = _leaf(msub, "show", _cmd_members_show, "show one member")
    p.add_argument("image_id", metavar="ID")
    p.add_argument("member_id", metavar="MEMBER")
    p = _leaf(msub, "add", _cmd_members_add, "share an image with a tenant (as the owner)")
    p.add_argument("image_id", metavar="ID")
    p.add_argument("member_id", metavar="MEMBER")
    p = _leaf(msub, "remove", _cmd_members_remove, "stop sharing (as the owner)", json_output=False)
    p.add_argument("image_id", metavar="ID")
    p.add_argument("member_id", metavar="MEMBER")
    for name, status in (("accept", "accepted"), ("reject", "rejected")):
        p = _leaf(msub, name, _cmd_members_status, f"{name} a shared image (as the member tenant)")
        p.add_argument("image_id", metavar="ID")
        p.add_argument("member_id", metavar="MEMBER", nargs="?", help="default: your own tenant")
        p.set_defaults(member_status=status)
    p = _leaf(msub, "set-status", _cmd_members_status, "set a member's status (as the member)")
    p.add_argument("image_id", metavar="ID")
    p.add_argument("member_id", metavar="MEMBER")
    p.add_argument("member_status", metavar="STATUS", choices=MEMBER_STATUSES)


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


# -- running ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    config_path = flag_value(args, "config")
    cloud = flag_value(args, "cloud")
    if (config_path is None) != (cloud is None):
        raise ConfigError("--config and --cloud go together: the file and the cloud to use in it")
    if config_path is not None:
        credentials = load_credentials(config_path, cloud, environ=os.environ)
    else:
        credentials = credentials_from_args(args, os.environ)
    region = region_from_args(args, os.environ, credentials)
    return run_with(args, credentials, region)


def run_with(args: argparse.Namespace, credentials: Credentials, region: str) -> int:
    """Run the parsed subcommand with credentials from anywhere (flags, a config file)."""
    configure_logging(LogLevel.DEBUG if getattr(args, "verbose", False) else LogLevel.WARNING)
    if not credentials.verify_tls:
        _err(
            "warning: TLS certificates are not verified (--insecure): anyone on the path "
            "can read the token and the images"
        )
    try:
        return asyncio.run(_run(args, credentials, region))
    except TransferError as exc:
        if exc.fatal:
            raise  # transfer.cli reports it and exits 2 (usage) or 3 (auth, catalog)
        _err(f"error: {exc}")
        return ExitCode.ERROR
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _err(f"error:{where}: {exc.strerror or exc}")
        return ExitCode.ERROR


async def _run(args: argparse.Namespace, credentials: Credentials, region: str) -> int:
    action: Action = args.images_action
    async with CloudSession(credentials) as cloud:
        client = await cloud.image_client(region)
        return await action(args, cloud, client)


def _err(message: str) -> None:
    print(f"image-transfer: {message}", file=sys.stderr)


# -- output -----------------------------------------------------------------------------------


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in [headers, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _print_fields(data: Mapping[str, Any]) -> None:
    width = max((len(k) for k in data), default=0)
    for key in sorted(data):
        print(f"{key.ljust(width)}  {_cell(data[key])}")


def _output_image(args: argparse.Namespace, image: Image) -> None:
    if args.json:
        _print_json(dict(image.raw))
    else:
        _print_fields(image.raw)


def _output_member(args: argparse.Namespace, member: Member) -> None:
    if args.json:
        _print_json(dict(member.raw))
    else:
        _print_fields(member.raw)


class _Progress:
    """One status line on a terminal, redrawn at most five times a second."""

    def __init__(self, label: str, total: int | None, start: int = 0) -> None:
        self._stream: IO[str] = sys.stderr
        self._label = label
        self._total = total
        self._done = start
        self._start = start
        self._began = time.monotonic()
        self._drawn = 0.0

    @classmethod
    def on_terminal(cls, label: str, total: int | None, start: int = 0) -> _Progress | None:
        return cls(label, total, start) if sys.stderr.isatty() else None

    def advance(self, count: int) -> None:
        self._done += count
        now = time.monotonic()
        if now - self._drawn >= 0.2:
            self._drawn = now
            self._draw(now)

    def finish(self) -> None:
        self._draw(time.monotonic())
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, now: float) -> None:
        rate = (self._done - self._start) / max(now - self._began, 1e-6)
        total = f" / {human_bytes(self._total)}" if self._total else ""
        pct = f" ({100 * self._done / self._total:.0f}%)" if self._total else ""
        line = f"{self._label}: {human_bytes(self._done)}{total}{pct}  {human_bytes(int(rate))}/s"
        self._stream.write(f"\r{line:<72}")
        self._stream.flush()


def _md5_file(path: Path, length: int | None = None) -> str:
    """MD5 of the file's first ``length`` bytes (all of it when None); runs in a thread."""
    digest = hashlib.md5()
    remaining = length
    with path.open("rb") as handle:
        while remaining is None or remaining > 0:
            want = 1 << 20 if remaining is None else min(1 << 20, remaining)
            chunk = handle.read(want)
            if not chunk:
                break
            digest.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
    return digest.hexdigest()


# -- subcommands ------------------------------------------------------------------------------

# Every list filter but the paging marker, which `list --all` follows by itself.
_LIST_FILTERS = sorted(IMAGE_FILTERS - {"marker"})


async def _cmd_list(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    filters = {k: getattr(args, k) for k in _LIST_FILTERS if getattr(args, k) is not None}
    limit: int | None = None if args.all else args.limit
    images: list[Image] = []
    # One more than the limit tells whether there were more.
    listing = client.list_images(page_size=min(1000, (limit or 999) + 1), **filters)
    try:
        async for image in listing:
            images.append(image)
            if limit is not None and len(images) > limit:
                break
    finally:
        await listing.aclose()
    more = limit is not None and len(images) > limit
    images = images[:limit]
    if args.json:
        _print_json([dict(i.raw) for i in images])
    else:
        _print_table(
            ("ID", "NAME", "STATUS", "VISIBILITY", "SIZE", "DISK"),
            [
                (
                    i.id,
                    _cell(i.name),
                    i.status,
                    i.visibility,
                    "-" if i.size is None else human_bytes(i.size),
                    _cell(i.disk_format),
                )
                for i in images
            ],
        )
    if more:
        _err(f"note: there are more than {limit} images; --all lists every one")
    return ExitCode.OK


async def _cmd_show(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    _output_image(args, await client.get_image(args.image_id))
    return ExitCode.OK


def _key_value(item: str, flag: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
    return key, value


async def _cmd_create(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
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
    if args.file is not None and not args.file.is_file():
        raise ConfigError(f"--file {args.file}: no such file")
    image = await client.create_image(fields)
    if args.file is not None:
        try:
            await _upload(client, image.id, args.file)
        except TransferError:
            _err(
                f"note: image {image.id} was created; send the data again with: "
                f"image-transfer images upload {image.id} {args.file}"
            )
            raise
        image = await client.get_image(image.id)
    _output_image(args, image)
    return ExitCode.OK


async def _upload(client: ImageClient, image_id: str, path: Path) -> None:
    size = (await asyncio.to_thread(path.stat)).st_size
    progress = _Progress.on_terminal("upload", size)
    # The server reports the MD5 it computed; hash the file alongside to check it.
    local_md5 = asyncio.ensure_future(asyncio.to_thread(_md5_file, path))
    try:
        await client.upload_image(
            image_id, path, size=size, progress=progress.advance if progress else None
        )
    except BaseException:
        local_md5.cancel()
        raise
    if progress is not None:
        progress.finish()
    local = await local_md5
    image = await client.get_image(image_id)
    if image.checksum is not None and image.checksum != local:
        raise IntegrityError(
            f"image {image_id} reports checksum {image.checksum} after the upload, "
            f"but {path} has MD5 {local}"
        )


async def _cmd_upload(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    if not args.path.is_file():
        raise ConfigError(f"{args.path}: no such file")
    await _upload(client, args.image_id, args.path)
    print(f"uploaded {args.path} to image {args.image_id}; checksum verified")
    return ExitCode.OK


async def _cmd_download(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    path: Path = args.path
    have = await asyncio.to_thread(_existing_size, path)
    image = await client.get_image(args.image_id)
    digest = hashlib.md5()
    if have and image.size is not None and have >= image.size:
        local = await asyncio.to_thread(_md5_file, path)
        if have == image.size and image.checksum in (None, local):
            print(f"{path} is already complete ({have} bytes, MD5 {local})")
            return ExitCode.OK
        _err(
            f"error: {path} already holds {have} bytes that do not match image "
            f"{image.id} ({image.size} bytes, checksum {image.checksum}); refusing to "
            "overwrite it: remove it or choose another path"
        )
        return ExitCode.ERROR
    if have:
        # Resume: the part already on disk goes into the hash first.
        await asyncio.to_thread(_hash_prefix, path, have, digest)
    try:
        received, content_md5, local = await _fetch(client, image, path, have, digest)
    except TransportError as exc:
        raise type(exc)(f"{exc}; {path} keeps the bytes so far: run again to resume") from exc
    problems = []
    if image.size is not None and received != image.size:
        problems.append(f"{received} bytes instead of {image.size}")
    if image.checksum is not None and local != image.checksum:
        problems.append(f"MD5 {local} differs from the image's checksum {image.checksum}")
    if content_md5 is not None and local != content_md5:
        problems.append(f"MD5 {local} differs from the server's Content-MD5 {content_md5}")
    if problems:
        raise IntegrityError(
            f"downloaded {path} does not match image {image.id}: " + "; ".join(problems)
        )
    print(f"downloaded image {image.id} to {path}: {received} bytes, MD5 {local} verified")
    return ExitCode.OK


def _existing_size(path: Path) -> int:
    """How many bytes a previous download left in ``path`` (0 when there is no such file)."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory: give a file path")
    return path.stat().st_size if path.exists() else 0


def _hash_prefix(path: Path, length: int, digest: Any) -> None:
    with path.open("rb") as handle:
        remaining = length
        while remaining > 0:
            chunk = handle.read(min(1 << 20, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)


async def _fetch(
    client: ImageClient, image: Image, path: Path, offset: int, digest: Any
) -> tuple[int, str | None, str]:
    """Write the image's bytes from ``offset`` on into ``path`` (``digest`` holds the MD5 of
    the bytes before it); returns the file's size, the Content-MD5 and the file's MD5."""
    async with client.download_image(image.id, offset=offset) as download:
        if download.status == 204:
            raise IntegrityError(f"image {image.id} has no data (status {image.status})")
        if offset and download.offset == 0:
            _err("note: the server ignored the range; downloading from the start")
            digest = hashlib.md5()
            offset = 0
        handle = await asyncio.to_thread(path.open, "ab" if offset else "wb")
        progress = _Progress.on_terminal("download", image.size, offset)
        written = offset
        try:
            async for chunk in download.chunks():
                digest.update(chunk)
                await asyncio.to_thread(handle.write, chunk)
                written += len(chunk)
                if progress is not None:
                    progress.advance(len(chunk))
        finally:
            await asyncio.to_thread(handle.close)
            if progress is not None:
                progress.finish()
        return written, download.content_md5, digest.hexdigest()


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


def _patch_from_args(args: argparse.Namespace) -> list[PatchOp]:
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


async def _cmd_update(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    image = await client.update_image(args.image_id, _patch_from_args(args))
    _output_image(args, image)
    return ExitCode.OK


async def _cmd_delete(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    await client.delete_image(args.image_id)
    print(f"deleted image {args.image_id}")
    return ExitCode.OK


async def _cmd_tag(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    await client.add_tag(args.image_id, args.tag)
    print(f"tagged image {args.image_id} with {args.tag!r}")
    return ExitCode.OK


async def _cmd_untag(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    await client.remove_tag(args.image_id, args.tag)
    print(f"removed tag {args.tag!r} from image {args.image_id}")
    return ExitCode.OK


async def _cmd_members_list(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    members = await client.list_members(args.image_id)
    if args.json:
        _print_json([dict(m.raw) for m in members])
    else:
        _print_table(
            ("MEMBER", "STATUS", "CREATED", "UPDATED"),
            [(m.member_id, m.status, _cell(m.created_at), _cell(m.updated_at)) for m in members],
        )
    return ExitCode.OK


async def _cmd_members_show(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    _output_member(args, await client.get_member(args.image_id, args.member_id))
    return ExitCode.OK


async def _cmd_members_add(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    _output_member(args, await client.add_member(args.image_id, args.member_id))
    return ExitCode.OK


async def _cmd_members_remove(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    await client.delete_member(args.image_id, args.member_id)
    print(f"image {args.image_id} is no longer shared with {args.member_id}")
    return ExitCode.OK


async def _cmd_members_status(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    member_id = args.member_id or await cloud.tenant_id()
    member = await client.update_member(args.image_id, member_id, args.member_status)
    _output_member(args, member)
    return ExitCode.OK
