"""What the job commands (``plan``, ``run``, ``status``, ``verify``) share: their common
options (``-c``, ``--job``, ``-v``/``-q``, ``--log-format``, ``--log-file``) and the loading of
the config and jobs they name.  Kept apart from the commands so that ``status`` needs neither
the engine nor aiohttp."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from transfer.cli.logs import LEVELS, configure_logging
from transfer.cli.output import ConfigOrColumn, config_option_help
from transfer.config.loader import load_config
from transfer.config.settings import LogFormat, LogLevel
from transfer.errors import ConfigError

if TYPE_CHECKING:
    from transfer.config.settings import Config, JobConfig


@dataclass(frozen=True)
class Command:
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        required=True,
        action=ConfigOrColumn,
        metavar="FILE",
        help=config_option_help("the TOML config file"),
    )
    parser.add_argument(
        "--job",
        action="append",
        metavar="NAME",
        help="the job to act on (repeatable; default: every job in the config)",
    )
    logging_arguments(parser)
    os_cloud_argument(
        parser,
        help_text="the clouds.yaml entry the config's `from_env = true` clouds read, instead "
        "of the OS_* variables (default: $OS_CLOUD)",
    )


def os_cloud_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    help_text: str = "the clouds.yaml entry to use, as the openstack CLI's --os-cloud "
    "(default: $OS_CLOUD)",
    default: object = None,
) -> None:
    """``--os-cloud NAME``: the clouds.yaml entry a command uses when none is named otherwise."""
    parser.add_argument("--os-cloud", metavar="NAME", default=default, help=help_text)


def openstack_environ(args: argparse.Namespace) -> dict[str, str]:
    """The environment with ``--os-cloud`` (when given) as ``OS_CLOUD``."""
    environ = dict(os.environ)
    if getattr(args, "os_cloud", None):
        environ["OS_CLOUD"] = args.os_cloud
    return environ


def logging_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``-v``, ``-q``, ``--log-format`` and ``--log-file``: how a job command logs."""
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    loudness.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="log warnings and errors only, and show no progress display",
    )
    parser.add_argument(
        "--log-format",
        choices=[f.value for f in LogFormat],
        metavar="{console,json}",
        help='override [log] format: "console" (the default; "auto", accepted too, is the '
        'same) or "json"',
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        metavar="FILE",
        help="append the log to FILE (no colours) instead of stderr; the progress display "
        "stays on the terminal",
    )


def load_jobs(args: argparse.Namespace) -> tuple[Config, list[JobConfig]]:
    """The config ``-c`` names (its warnings printed, its logging set up) and the jobs
    ``--job`` names (every job when none is named).  ``copy`` and ``sync`` build their config
    from their arguments and hand it over as ``args.built_config``."""
    built: Config | None = getattr(args, "built_config", None)
    config = built or load_config(args.config, environ=openstack_environ(args))
    for warning in config.warnings:
        print(f"image-transfer: warning: {warning}", file=sys.stderr)
    start_logging(args, config)
    names = args.job or list(config.jobs)
    unknown = [n for n in names if n not in config.jobs]
    if unknown:
        known = ", ".join(config.jobs) or "none"
        raise ConfigError(f"{args.config}: no job named {unknown[0]!r} (jobs: {known})")
    if not names:
        raise ConfigError(f"{args.config}: the config defines no [[jobs]]")
    return config, [config.jobs[n] for n in names]


def start_logging(args: argparse.Namespace, config: Config) -> None:
    """The logging a job command's ``-v``, ``-q``, ``--log-format`` and ``--log-file`` ask for,
    over the config's ``[log]``."""
    level = config.log.level
    if args.verbose:
        level = LogLevel.DEBUG
    elif args.quiet and LEVELS[level] < LEVELS[LogLevel.WARNING]:
        level = LogLevel.WARNING
    try:
        configure_logging(
            level,
            LogFormat(args.log_format) if args.log_format else config.log.format,
            log_file=args.log_file,
        )
    except OSError as exc:
        raise ConfigError(f"--log-file: cannot open {args.log_file}: {exc.strerror}") from None
