"""The ecosystem's clients in a virtual environment of their own, built once and reused.

python-glanceclient (``glance``), openstacksdk and python-openstackclient (``openstack``),
pinned by ``interop/clients-requirements.txt``, under
``~/.cache/image-transfer/interop/clients-venv``: what
``tests/ecosystem`` runs against the emulator and what the benchmark's glanceclient baseline
runs.  Built like Glance's environment (``interop/environment.py``: a stamp, a lock,
``IndexUnreachable`` when the package index is out of reach, ``BuildFailed`` otherwise).

``python -m interop.clients`` (or ``make clients``) builds it by hand and prints its path.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from interop.environment import DEFAULT_ROOT, HERE, BuildFailed, IndexUnreachable, ensure_venv

CLIENTS_REQUIREMENTS = HERE / "clients-requirements.txt"
VENV_NAME = "clients-venv"
CLIENTS = "python-glanceclient==4.13.0, openstacksdk==4.22.0, python-openstackclient==10.5.0"


@dataclass(frozen=True)
class ClientsInstall:
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for running the clients: ``base`` (default: ours) without any
        ``OS_*`` variable (a user's own cloud must not leak in) nor Python's own settings."""
        source = os.environ if base is None else base
        return {
            k: v for k, v in source.items() if not k.startswith(("OS_", "PYTHON", "VIRTUAL_ENV"))
        }


def ensure_clients(
    root: Path = DEFAULT_ROOT,
    *,
    requirements: Path = CLIENTS_REQUIREMENTS,
    pip_env: Mapping[str, str] | None = None,
) -> ClientsInstall:
    """The clients' environment under ``root``: reused when complete, else (re)built."""
    install = ClientsInstall(venv=root / VENV_NAME)
    ensure_venv(
        install.venv,
        requirements,
        what=CLIENTS,
        lock=root / "clients-build.lock",
        pip_env=pip_env,
        ready=lambda: all(install.bin(n).exists() for n in ("glance", "openstack")),
    )
    return install


def main() -> int:
    """``python -m interop.clients``: build (or check) the environment, print its path."""
    try:
        install = ensure_clients()
    except (IndexUnreachable, BuildFailed) as exc:
        print(f"interop.clients: {exc}", file=sys.stderr)
        return 1
    print(install.venv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
