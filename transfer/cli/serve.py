"""The ``serve`` command: the live page of the journal's jobs (``transfer.web``), until SIGINT or
SIGTERM; and ``--serve``, the same page beside a ``run``, ``copy`` or ``sync``.

Like ``status``, ``serve`` reads the journal alone: no credentials, no request to a cloud.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from transfer.cli.main import ExitCode
from transfer.cli.options import Command, common_arguments, openstack_environ, start_logging
from transfer.config.loader import load_config
from transfer.config.settings import Config
from transfer.errors import ConfigError
from transfer.web import DEFAULT_LISTEN

if TYPE_CHECKING:
    from transfer.web.security import Listen


def _configure_serve(parser: argparse.ArgumentParser) -> None:
    common_arguments(parser)
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default=DEFAULT_LISTEN,
        help=f"where the page listens (default: {DEFAULT_LISTEN}; port 0: any free port); "
        "an address other than loopback needs --auth-token-file",
    )
    parser.add_argument(
        "--auth-token-file",
        type=Path,
        metavar="FILE",
        help="a file whose one line (16 or more characters) is the token every request must "
        "carry: Authorization: Bearer TOKEN, or once ?token=TOKEN in a browser (then a cookie)",
    )
    parser.epilog = (
        "examples:\n"
        "  image-transfer serve -c config.toml\n"
        "  image-transfer serve -c config.toml --job kr1-to-kr2 --listen 127.0.0.1:9000\n"
        "  openssl rand -hex 24 > token && chmod 600 token\n"
        "  image-transfer serve -c config.toml --listen 0.0.0.0:8077 --auth-token-file token\n"
        '  curl -H "Authorization: Bearer $(cat token)" http://HOST:8077/api/overview'
    )


def serve_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--serve`` and ``--serve-token-file``, for the commands that run jobs."""
    parser.add_argument(
        "--serve",
        metavar="HOST:PORT",
        help="serve the live page (as `image-transfer serve`) on HOST:PORT while the jobs run; "
        "an address other than loopback needs --serve-token-file",
    )
    parser.add_argument(
        "--serve-token-file",
        type=Path,
        metavar="FILE",
        help="the token the page of --serve demands (as serve's --auth-token-file)",
    )


def _page_terms(
    listen_text: str, token_file: Path | None, *, options: tuple[str, str]
) -> tuple[Listen, str | None]:
    """Where to listen and the token, checked (``ConfigError``: a bad address or token file,
    or an address other than loopback without a token)."""
    from transfer.web.security import check_bind, parse_listen, read_token

    listen = parse_listen(listen_text, options[0])
    token = None
    if token_file is not None:
        token, warnings = read_token(token_file, options[1])
        for warning in warnings:
            print(f"image-transfer: warning: {warning}", file=sys.stderr)
    check_bind(listen, token)
    return listen, token


@asynccontextmanager
async def _page(
    config: Config, listen: Listen, token: str | None, only: Sequence[str] | None
) -> AsyncIterator[str]:
    from transfer.web.server import serving

    async with serving(config.journal, listen, token=token, jobs=list(config.jobs), only=only) as (
        url,
        where,
    ):
        shown = f"{url}?token=..." if token is not None else url
        print(f"image-transfer: live page of journal {where} on {shown}", file=sys.stderr)
        sys.stderr.flush()
        yield url


def page_beside(config: Config, args: argparse.Namespace) -> AbstractAsyncContextManager[object]:
    """The live page while ``run``, ``copy`` or ``sync`` works (nothing without ``--serve``);
    its options are checked now, before any network call."""
    if getattr(args, "serve", None) is None:
        if getattr(args, "serve_token_file", None) is not None:
            raise ConfigError("--serve-token-file: only with --serve")
        return nullcontext()
    listen, token = _page_terms(
        args.serve, args.serve_token_file, options=("--serve", "--serve-token-file")
    )
    return _page(config, listen, token, None)


def _run_serve(args: argparse.Namespace) -> int:
    config = load_config(args.config, resolve_secrets=False, environ=openstack_environ(args))
    listen, token = _page_terms(
        args.listen, args.auth_token_file, options=("--listen", "--auth-token-file")
    )
    start_logging(args, config)

    async def main() -> None:
        async with _page(config, listen, token, args.job):
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    return

    anyio.run(main)
    return ExitCode.OK


serve = Command(_configure_serve, _run_serve)
