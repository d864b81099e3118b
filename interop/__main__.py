"""``python -m interop``: real Glance as two regions on loopback, for trying things by hand.

Builds (or reuses) the Glance environment under ``~/.cache/image-transfer/interop/``, starts
regions KR1 and KR2 with
tenants src, dst and partner, prints their endpoints, tenant ids and tokens as shell variables
and the lines of an engine config, then serves until Ctrl-C.  The tokens are made up for this
run and are valid only against these servers.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from interop.environment import BuildFailed, IndexUnreachable, ensure_glance
from interop.server import GlanceCloud, ServerFailed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interop", description=__doc__)
    parser.add_argument("--workdir", type=Path, help="keep the servers' files here")
    parser.add_argument("--tenants", default="src,dst,partner", help="comma-separated tenant names")
    args = parser.parse_args(argv)
    try:
        install = ensure_glance()
    except (IndexUnreachable, BuildFailed) as exc:
        print(f"interop: {exc}", file=sys.stderr)
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="glance-interop-"))
    tenants = tuple(t for t in args.tenants.split(",") if t)
    cloud = GlanceCloud(install, workdir, ("KR1", "KR2"), tenants)
    try:
        cloud.start()
    except ServerFailed as exc:
        print(f"interop: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for region, url in cloud.regions.items():
            print(f"export GLANCE_{region}={url}")
        for tenant in cloud.tenants.values():
            var = tenant.name.upper().replace("-", "_")
            print(f"export {var}_TENANT={tenant.project_id} {var}_TOKEN={tenant.token}")
        print(f"# files and logs: {workdir}\n# engine config, per cloud:")
        for tenant in cloud.tenants.values():
            var = tenant.name.upper().replace("-", "_")
            print(
                f'#   [clouds.{tenant.name}] tenant_id = "{tenant.project_id}" '
                f'token_env = "{var}_TOKEN"'
            )
        endpoints = " ".join(f'{r} = "{u}"' for r, u in cloud.regions.items())
        print(f"#   [clouds.NAME.endpoints] {endpoints}\n# Ctrl-C stops the servers.")
        sys.stdout.flush()
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cloud.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
