"""``image-transfer emulator``: run the emulated cloud until SIGINT or SIGTERM.

On start it prints one JSON line to stdout (flavour, identity URLs, region URLs, admin URL,
tenants with their credentials) so a script or a test can read where to connect; nothing else
goes to stdout.  ``--write-config DIR`` also writes a config.toml and a clouds.yaml for it
(``configs``) and says on stderr how to use them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from transfer.emulator.cloud import Emulator
from transfer.emulator.configs import free_port_block, how_to_use, write_configs
from transfer.emulator.faults import ROUTES, Faults, parse_routes
from transfer.emulator.flavours import FLAVOURS
from transfer.emulator.identity import DEFAULT_TENANTS, TenantSpec, tenant_from_name
from transfer.errors import ConfigError, TransferError

_SIZE_SUFFIXES = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
_IDENTITY_VERSIONS = ("v2.0", "v3")

DESCRIPTION = """\
Run an emulated cloud: NHN or a private OpenStack.  It listens until SIGINT or SIGTERM and
prints one JSON line on stdout: its identity URL, region URLs, admin URL and the tenants with
their user and password.  Its faults can be changed while it runs: PATCH /admin/faults (see
docs/emulator.md)."""

EPILOG = """\
examples:
  image-transfer emulator                                      free ports, new at every start
  image-transfer emulator --port 5000 --write-config ./emu     identity on 5000, KR1 5001, KR2 5002
  image-transfer plan -c ./emu/config.toml                     in another shell: plan its job
  image-transfer emulator --port 5000 --state-dir ./state      keep the images across restarts
  image-transfer emulator --flavour glance --region RegionOne  a private OpenStack (Keystone v3)
  image-transfer emulator --error-rate 0.1 --latency 0.05      5xx on 10% of requests, 50 ms more
  curl -X PATCH -d '{"error_rate": 0.5}' http://127.0.0.1:5000/admin/faults"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    parser.add_argument(
        "--flavour",
        default="nhn",
        metavar="|".join(FLAVOURS),
        help="whose rules the image regions follow: NHN Cloud's guide (nhn, the default) or "
        "upstream Glance 33's (glance)",
    )
    parser.add_argument(
        "--identity",
        metavar="v2.0,v3",
        help="Keystone versions to serve (default: the flavour's, v2.0 for nhn, v3 for glance)",
    )
    parser.add_argument(
        "--port",
        default="0",
        metavar="N",
        help="the identity service's port; the regions listen on the next ones, in --region "
        "order (N+1, N+2, ...).  Default 0: free ports, new at every start.  A fixed port lets "
        "a config or clouds.yaml point at the emulator across restarts",
    )
    parser.add_argument(
        "--write-config",
        type=Path,
        metavar="DIR",
        help="write DIR/config.toml (a job between the regions and tenants) and DIR/clouds.yaml "
        "for the clouds served, and say how to use them; without --port a free block of ports "
        "is picked and printed",
    )
    parser.add_argument(
        "--region",
        action="append",
        dest="regions",
        metavar="NAME",
        help="a region to serve (repeatable; default KR1 and KR2)",
    )
    parser.add_argument(
        "--tenant",
        action="append",
        dest="tenants",
        metavar="NAME:USER:PASSWORD",
        help="a tenant and its API user (repeatable; default demo-src and demo-dst)",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep images here across restarts (default: a temporary folder, removed on exit)",
    )
    parser.add_argument(
        "--token-ttl",
        default="43200",
        metavar="SECONDS",
        help="lifetime of the tokens issued (default 43200: 12 h, as NHN's)",
    )
    parser.add_argument(
        "--seed", default="0", metavar="N", help="seed of the fault dice (default 0)"
    )
    parser.add_argument(
        "--page-size", default="25", metavar="N", help="list limit when none is asked (default 25)"
    )
    parser.add_argument(
        "--max-page-size",
        default="1000",
        metavar="N",
        help="the largest list limit granted (default 1000, as NHN's)",
    )
    parser.add_argument("--image-size-cap", metavar="BYTES", help="refuse larger uploads (413)")
    _fault_options(parser.add_argument_group("faults (all off by default; see docs/emulator.md)"))


def _fault_options(faults: argparse._ArgumentGroup) -> None:
    faults.add_argument("--error-rate", metavar="P", help="probability of an injected 5xx")
    faults.add_argument(
        "--error-routes",
        metavar="R1,R2",
        help=f"routes that may fail (default all: {','.join(sorted(ROUTES))})",
    )
    faults.add_argument(
        "--error-statuses",
        metavar="S1,S2",
        help="statuses of injected errors (default 500,502,503)",
    )
    faults.add_argument("--retry-after", metavar="SECONDS", help="Retry-After of injected errors")
    faults.add_argument("--errors-remaining", metavar="N", help="stop after N injected errors")
    faults.add_argument(
        "--drop-download-after", metavar="BYTES", help="cut downloads after this many bytes"
    )
    faults.add_argument(
        "--drop-upload-after", metavar="BYTES", help="cut uploads after this many bytes"
    )
    faults.add_argument("--drops-remaining", metavar="N", help="stop after N cut connections")
    faults.add_argument("--latency", metavar="SECONDS", help="added to every request")
    faults.add_argument("--latency-jitter", metavar="SECONDS", help="up to this much more")
    faults.add_argument(
        "--latency-routes", metavar="ROUTES", help="comma-separated routes the latency applies to"
    )
    faults.add_argument(
        "--connect-latency",
        metavar="SECONDS",
        help="added to each new connection's first request (a TCP and TLS handshake)",
    )
    faults.add_argument(
        "--bandwidth", metavar="BYTES/S", help="per connection cap; suffixes k, m, g (x1024)"
    )
    faults.add_argument(
        "--corrupt-downloads", metavar="N", help="flip one byte in the next N downloads"
    )


def _number(flag: str, text: str, kind: type[int] | type[float], *, low: float = 0) -> Any:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{flag}: expected {what}, got {text!r}") from None
    if value < low:
        raise ConfigError(f"{flag}: expected at least {low:g}, got {text!r}")
    return value


def _size(flag: str, text: str) -> int:
    factor = _SIZE_SUFFIXES.get(text[-1:].lower(), 1)
    digits = text[:-1] if factor > 1 else text
    return int(_number(flag, digits, int)) * factor


def _tenants(specs: list[str] | None) -> tuple[TenantSpec, ...]:
    if not specs:
        return DEFAULT_TENANTS
    tenants = []
    for spec in specs:
        parts = spec.split(":", 2)
        if len(parts) != 3 or not all(parts):
            # Name only: the rest may hold a password.
            raise ConfigError(
                f"--tenant: expected NAME:USER:PASSWORD (three non-empty parts), "
                f"got {len(parts)} part(s) for {parts[0]!r}"
            )
        tenants.append(tenant_from_name(*parts))
    return tuple(tenants)


def _flavour(text: str) -> str:
    if text not in FLAVOURS:
        raise ConfigError(f"--flavour: expected one of {', '.join(FLAVOURS)}, got {text!r}")
    return text


def _identity(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    versions = tuple(part.strip() for part in text.split(","))
    wrong = [v for v in versions if v not in _IDENTITY_VERSIONS]
    if wrong or not versions:
        raise ConfigError(
            f"--identity: expected a comma-separated list of {', '.join(_IDENTITY_VERSIONS)}, "
            f"got {text!r}"
        )
    if len(set(versions)) != len(versions):
        raise ConfigError(f"--identity: {text!r} names a version twice")
    return versions


def _faults(args: argparse.Namespace) -> Faults:
    changes: dict[str, Any] = {}
    if args.error_rate is not None:
        changes["error_rate"] = _number("--error-rate", args.error_rate, float)
    if args.error_routes is not None:
        changes["error_routes"] = parse_routes(args.error_routes)
    if args.latency_routes is not None:
        changes["latency_routes"] = parse_routes(args.latency_routes)
    if args.error_statuses is not None:
        changes["error_statuses"] = tuple(
            _number("--error-statuses", s.strip(), int) for s in args.error_statuses.split(",")
        )
    floats = ("retry_after", "latency", "latency_jitter", "connect_latency")
    ints = ("errors_remaining", "drops_remaining", "corrupt_downloads")
    sizes = ("drop_download_after", "drop_upload_after", "bandwidth")
    for name in floats + ints + sizes:
        text = getattr(args, name)
        if text is None:
            continue
        flag = "--" + name.replace("_", "-")
        if name in floats:
            changes[name] = _number(flag, text, float)
        elif name in ints:
            changes[name] = _number(flag, text, int)
        else:
            changes[name] = _size(flag, text)
    try:
        return Faults(**changes)
    except ValueError as exc:
        name, _, problem = str(exc).partition(":")
        raise ConfigError(f"--{name.replace('_', '-')}:{problem}") from None


def build(args: argparse.Namespace) -> Emulator:
    """The emulator the parsed arguments describe (ConfigError if they make no sense)."""
    cap = None if args.image_size_cap is None else _size("--image-size-cap", args.image_size_cap)
    regions = tuple(args.regions or ("KR1", "KR2"))
    port = _number("--port", args.port, int)
    if port > 65535 - len(regions):
        raise ConfigError(f"--port: {port} leaves no room for {len(regions)} region port(s)")
    try:
        return Emulator(
            regions=regions,
            tenants=_tenants(args.tenants),
            host=args.host,
            port=port,
            state_dir=args.state_dir,
            token_ttl=_number("--token-ttl", args.token_ttl, float, low=0.001),
            seed=_number("--seed", args.seed, int, low=-(2**63)),
            default_page_size=_number("--page-size", args.page_size, int, low=1),
            max_page_size=_number("--max-page-size", args.max_page_size, int, low=1),
            image_size_cap=cap,
            faults=_faults(args),
            flavour=_flavour(args.flavour),
            identity_versions=_identity(args.identity),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def announcement(emu: Emulator) -> str:
    """The one JSON line printed on start."""
    extra = {"identity_v3_url": emu.identity_v3_url} if "v3" in emu.identity_versions else {}
    return json.dumps(
        {
            "flavour": emu.flavour,
            "identity_url": emu.identity_url,
            "identity_root": emu.identity_root,
            **extra,
            "regions": emu.regions,
            "admin_url": emu.admin_url,
            "tenants": [
                {
                    "name": t.name,
                    "tenant_id": t.tenant_id,
                    "username": t.username,
                    "password": t.password,
                }
                for t in emu.tenants
            ],
        }
    )


async def serve(
    emu: Emulator, where: str, write_config: Path | None = None, picked: bool = False
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            await emu.start()
        except OSError as exc:
            raise TransferError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        try:
            if write_config is not None:
                _write(emu, write_config, picked)
            sys.stdout.write(announcement(emu) + "\n")
            sys.stdout.flush()
            await stop.wait()
        finally:
            await emu.close()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def _write(emu: Emulator, directory: Path, picked: bool) -> None:
    try:
        write_configs(emu, directory)
    except OSError as exc:
        raise TransferError(
            f"--write-config: cannot write into {directory}: {exc.strerror or exc}"
        ) from None
    port = int(emu.identity_root.rsplit(":", 1)[1])
    sys.stderr.write(how_to_use(emu, directory, port, picked))
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    picked = False
    if args.write_config is not None and _number("--port", args.port, int) == 0:
        count = 1 + len(args.regions or ("KR1", "KR2"))
        try:
            args.port = str(free_port_block(args.host, count))
        except OSError as exc:
            raise TransferError(f"--write-config: {exc}") from None
        picked = True
    emu = build(args)
    asyncio.run(serve(emu, f"{args.host}:{args.port}", args.write_config, picked))
    return 0
