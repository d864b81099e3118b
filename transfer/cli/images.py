"""The ``images`` command: every Image API call from the shell, one subcommand per call.

Its flags become ``Credentials`` over the ``OS_*`` environment in ``transfer.cli.images_auth``
(flags win; Keystone v2.0 or v3); its arguments are built in ``transfer.cli.images_args``, its
output in ``transfer.cli.images_output`` (``-f table|json|value|csv``, ``--column``), its data
calls in ``transfer.cli.images_data``.  An image is named by id or by name
(``transfer.cli.images_find``).  All HTTP goes through ``transfer.cloud.sessions.CloudSession``
and ``transfer.cloud.client.ImageClient``.

Exit codes: 0 done, 1 the API or a file said no (or a name matched no image, or several), 2 a
usage error, 3 the credentials or the catalog failed (raised to ``transfer.cli``, which maps
fatal errors).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable

from transfer.cli import images_args
from transfer.cli.images_auth import credentials_from_args, flag_value, region_from_args
from transfer.cli.images_changes import create_fields, patch_from_args
from transfer.cli.images_data import download, err, upload
from transfer.cli.images_find import find_image, find_image_id
from transfer.cli.images_output import print_image, print_images, print_member, print_members
from transfer.cli.logs import configure_logging
from transfer.cli.main import ExitCode
from transfer.cloud.client import IMAGE_FILTERS, ImageClient
from transfer.cloud.sessions import CloudSession
from transfer.config.loader import load_credentials
from transfer.config.settings import Credentials, LogLevel
from transfer.errors import ConfigError, TransferError
from transfer.models import Image

__all__ = ["configure", "credentials_from_args", "region_from_args", "run", "run_with"]

Action = Callable[[argparse.Namespace, CloudSession, ImageClient], Awaitable[int]]


def configure(parser: argparse.ArgumentParser) -> None:
    images_args.configure(parser, ACTIONS)


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
        err(
            "warning: TLS certificates are not verified (--insecure): anyone on the path "
            "can read the token and the images"
        )
    try:
        return asyncio.run(_run(args, credentials, region))
    except TransferError as exc:
        if exc.fatal:
            raise  # transfer.cli reports it and exits 2 (usage) or 3 (auth, catalog)
        err(f"error: {exc}")
        return ExitCode.ERROR
    except BrokenPipeError:
        raise  # the reader went away (`images list | head`): transfer.cli ends quietly
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        err(f"error:{where}: {exc.strerror or exc}")
        return ExitCode.ERROR


async def _run(args: argparse.Namespace, credentials: Credentials, region: str) -> int:
    action: Action = args.images_action
    async with CloudSession(credentials) as cloud:
        client = await cloud.image_client(region)
        return await action(args, cloud, client)


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
    print_images(args, images[:limit])
    if more:
        err(f"note: there are more than {limit} images; --all lists every one")
    return ExitCode.OK


async def _cmd_show(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    print_image(args, await find_image(client, args.image))
    return ExitCode.OK


async def _cmd_create(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    fields = create_fields(args)
    if args.file is not None and not args.file.is_file():
        raise ConfigError(f"--file {args.file}: no such file")
    image = await client.create_image(fields)
    if args.file is not None:
        try:
            await upload(client, image.id, args.file)
        except TransferError:
            err(
                f"note: image {image.id} was created; send the data again with: "
                f"image-transfer images upload {image.id} {args.file}"
            )
            raise
        image = await client.get_image(image.id)
    print_image(args, image)
    return ExitCode.OK


async def _cmd_upload(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    if not args.path.is_file():
        raise ConfigError(f"{args.path}: no such file")
    image_id = await find_image_id(client, args.image)
    await upload(client, image_id, args.path)
    print(f"uploaded {args.path} to image {image_id}; checksum verified")
    return ExitCode.OK


async def _cmd_download(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    return await download(client, await find_image(client, args.image), args.path)


async def _cmd_update(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    patch = patch_from_args(args)
    image = await client.update_image(await find_image_id(client, args.image), patch)
    print_image(args, image)
    return ExitCode.OK


async def _cmd_delete(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    image = await find_image(client, args.image)
    await client.delete_image(image.id)
    named = f" ({image.name})" if image.name else ""
    print(f"deleted image {image.id}{named}")
    return ExitCode.OK


async def _cmd_tag(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    image_id = await find_image_id(client, args.image)
    await client.add_tag(image_id, args.tag)
    print(f"tagged image {image_id} with {args.tag!r}")
    return ExitCode.OK


async def _cmd_untag(args: argparse.Namespace, cloud: CloudSession, client: ImageClient) -> int:
    image_id = await find_image_id(client, args.image)
    await client.remove_tag(image_id, args.tag)
    print(f"removed tag {args.tag!r} from image {image_id}")
    return ExitCode.OK


async def _cmd_members_list(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    print_members(args, await client.list_members(await find_image_id(client, args.image)))
    return ExitCode.OK


async def _cmd_members_show(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    image_id = await find_image_id(client, args.image)
    print_member(args, await client.get_member(image_id, args.member_id))
    return ExitCode.OK


async def _cmd_members_add(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    image_id = await find_image_id(client, args.image)
    print_member(args, await client.add_member(image_id, args.member_id))
    return ExitCode.OK


async def _cmd_members_remove(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    image_id = await find_image_id(client, args.image)
    await client.delete_member(image_id, args.member_id)
    print(f"image {image_id} is no longer shared with {args.member_id}")
    return ExitCode.OK


async def _cmd_members_status(
    args: argparse.Namespace, cloud: CloudSession, client: ImageClient
) -> int:
    image_id = await find_image_id(client, args.image)
    member_id = args.member_id or await cloud.tenant_id()
    print_member(args, await client.update_member(image_id, member_id, args.member_status))
    return ExitCode.OK


#: The function of each subcommand, by its path under ``images``.
ACTIONS: dict[str, Action] = {
    "list": _cmd_list,
    "show": _cmd_show,
    "create": _cmd_create,
    "upload": _cmd_upload,
    "download": _cmd_download,
    "update": _cmd_update,
    "delete": _cmd_delete,
    "tag": _cmd_tag,
    "untag": _cmd_untag,
    "members list": _cmd_members_list,
    "members show": _cmd_members_show,
    "members add": _cmd_members_add,
    "members remove": _cmd_members_remove,
    "members accept": _cmd_members_status,
    "members reject": _cmd_members_status,
    "members set-status": _cmd_members_status,
}
