"""Network namespaces that stand in for several hosts on one machine.

A ``Topology`` is a *hub* namespace holding a bridge (the switch, with the hub's own address:
PostgreSQL and the emulator listen there) and one namespace per worker host, each plugged into
the bridge by a veth pair and given an address of its own.  The test process, in the root
namespace, is plugged in too (one more veth, address ``.254``), to seed the cloud and to check
it.  Cutting a host off (``cut``) takes its port on the bridge down: from the host's side the
cable is pulled, and its packets go nowhere, silently, as in a real partition.

Every name carries ``PREFIX`` and a per-topology tag, and interface names stay within the
kernel's 15 characters.  A topology writes a state file (``STATE_DIR/TAG``, holding the pid of
the process that made it); ``sweep_leftovers`` removes the namespaces and links of any tag whose
maker is gone, so a test session killed before its teardown leaves nothing behind for long.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

PREFIX = "itn"
STATE_DIR = Path("/run/image-transfer-netns")
_TAG_LENGTH = 5
_NAME = re.compile(rf"^{PREFIX}([0-9a-f]{{{_TAG_LENGTH}}})")
_IFNAMSIZ = 15
#: The third octet of 10.77.X.0/24 is chosen among these, skipping any the machine uses.
_SUBNETS = range(0, 250)


class NetnsError(RuntimeError):
    """An ``ip`` command failed."""


def ip_binary() -> str | None:
    return shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = ip_binary()
    if binary is None:
        raise NetnsError("the ip command (iproute2) is not installed")
    done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def namespaces() -> list[str]:
    listed = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def root_links() -> list[str]:
    """Names of the root namespace's interfaces."""
    names = []
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        # "7: itnab12cr@if6: <BROADCAST,...": the name, then the peer's index.
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


def namespace_pids(netns: str) -> list[int]:
    listed = _ip("netns", "pids", netns, check=False).stdout
    return [int(word) for word in listed.split() if word.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live_tags() -> set[str]:
    tags = set()
    if STATE_DIR.is_dir():
        for path in STATE_DIR.iterdir():
            with contextlib.suppress(OSError, ValueError):
                if _alive(int(path.read_text().split()[0])):
                    tags.add(path.name)
    return tags


def _kill_namespace(netns: str) -> None:
    """Kill what still runs in one of our namespaces (by pid), then delete it."""
    for _ in range(50):
        pids = namespace_pids(netns)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["sleep", "0.1"], check=False)
    _ip("netns", "delete", netns, check=False)


def sweep_leftovers() -> list[str]:
    """Remove the namespaces and root links of topologies whose maker is no longer running;
    returns what was removed."""
    live = _live_tags()
    removed = []
    for netns in namespaces():
        match = _NAME.match(netns)
        if match and match.group(1) not in live:
            _kill_namespace(netns)
            removed.append(f"netns {netns}")
    for link in root_links():
        match = _NAME.match(link)
        if match and match.group(1) not in live:
            _ip("link", "delete", link, check=False)
            removed.append(f"link {link}")
    if STATE_DIR.is_dir():
        for path in STATE_DIR.iterdir():
            if path.name not in live:
                path.unlink(missing_ok=True)
    return removed


def unavailable_reason() -> str | None:
    """Why network namespace tests cannot run here (None: they can)."""
    if os.geteuid() != 0:
        return f"network namespaces need root (running as uid {os.geteuid()})"
    if ip_binary() is None:
        return "the ip command (iproute2) is not installed"
    probe = Topology(labels=())
    try:
        probe.create()
    except (NetnsError, OSError, subprocess.SubprocessError) as exc:
        return f"cannot create network namespaces, a bridge and veth pairs: {exc}"
    finally:
        probe.destroy()
    return None


def _used_subnets() -> str:
    return (
        _ip("-4", "-o", "addr", "show", check=False).stdout + _ip("-4", "route", check=False).stdout
    )


@dataclass(frozen=True)
class Host:
    """One worker host: its namespace, its address, and its cable to the bridge."""

    label: str
    netns: str
    address: str
    veth: str  # inside the host's namespace
    port: str  # the other end, on the hub's bridge


class Topology:
    """A hub namespace with a bridge, host namespaces on it, and the root namespace on it."""

    def __init__(self, labels: Sequence[str] = ("h1", "h2", "h3")) -> None:
        if len(set(labels)) != len(labels) or len(labels) > 200:
            raise ValueError(f"host labels must be unique (at most 200): {labels!r}")
        self.tag = secrets.token_hex(4)[:_TAG_LENGTH]
        base = f"{PREFIX}{self.tag}"
        used = _used_subnets()
        free = [n for n in _SUBNETS if f"10.77.{n}." not in used]
        if not free:
            raise NetnsError("no free 10.77.X.0/24 subnet for the test network")
        self.network = ipaddress.IPv4Network(f"10.77.{free[0]}.0/24")
        prefix = str(self.network.network_address).rsplit(".", 1)[0]
        self.hub_netns = f"{base}-hub"
        self.bridge = f"{base}br"
        self.hub_address = f"{prefix}.1"
        self.root_veth = f"{base}r"
        self.root_port = f"{base}rp"
        self.root_address = f"{prefix}.254"
        self.hosts: dict[str, Host] = {}
        for index, label in enumerate(labels):
            if not re.fullmatch(r"[a-z0-9]{1,4}", label):
                raise ValueError(f"host label {label!r}: 1-4 lowercase letters or digits")
            self.hosts[label] = Host(
                label=label,
                netns=f"{base}-{label}",
                address=f"{prefix}.{11 + index}",
                veth=f"{base}{label}",
                port=f"{base}{label}p",
            )
        for name in (self.bridge, self.root_veth, self.root_port):
            assert len(name) <= _IFNAMSIZ, name
        for host in self.hosts.values():
            assert len(host.port) <= _IFNAMSIZ, host.port
        self._made = False

    @property
    def prefixlen(self) -> int:
        return self.network.prefixlen

    def _namespaces(self) -> list[str]:
        return [self.hub_netns, *(h.netns for h in self.hosts.values())]

    def create(self) -> None:
        """Build the network (raises NetnsError; ``destroy`` cleans up a half-built one)."""
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        (STATE_DIR / self.tag).write_text(f"{os.getpid()} {self.network}\n")
        self._made = True
        hub, bits = self.hub_netns, self.prefixlen
        _ip("netns", "add", hub)
        _ip("-n", hub, "link", "set", "lo", "up")
        _ip("-n", hub, "link", "add", self.bridge, "type", "bridge", "forward_delay", "0")
        _ip("-n", hub, "addr", "add", f"{self.hub_address}/{bits}", "dev", self.bridge)
        _ip("-n", hub, "link", "set", self.bridge, "up")
        for host in self.hosts.values():
            _ip("netns", "add", host.netns)
            _ip("-n", host.netns, "link", "set", "lo", "up")
            _ip(
                *("link", "add", host.veth, "netns", host.netns, "type", "veth"),
                *("peer", "name", host.port, "netns", hub),
            )
            _ip("-n", hub, "link", "set", host.port, "master", self.bridge)
            _ip("-n", hub, "link", "set", host.port, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/{bits}", "dev", host.veth)
            _ip("-n", host.netns, "link", "set", host.veth, "up")
        _ip(
            *("link", "add", self.root_veth, "type", "veth"),
            *("peer", "name", self.root_port, "netns", hub),
        )
        _ip("-n", hub, "link", "set", self.root_port, "master", self.bridge)
        _ip("-n", hub, "link", "set", self.root_port, "up")
        _ip("addr", "add", f"{self.root_address}/{bits}", "dev", self.root_veth)
        _ip("link", "set", self.root_veth, "up")

    def leftovers(self) -> list[str]:
        """What of this topology still exists."""
        mine = f"{PREFIX}{self.tag}"
        found = [f"netns {n}" for n in namespaces() if n.startswith(mine)]
        found += [f"link {n}" for n in root_links() if n.startswith(mine)]
        return found

    def destroy(self) -> list[str]:
        """Remove everything this topology made (safe to call twice, or after a failed
        ``create``); returns what could not be removed."""
        if not self._made:
            return []
        for _ in range(3):
            _ip("link", "delete", self.root_veth, check=False)
            for netns in self._namespaces():
                if netns in namespaces():
                    _kill_namespace(netns)
            if not self.leftovers():
                break
        left = self.leftovers()
        if not left:
            (STATE_DIR / self.tag).unlink(missing_ok=True)
            self._made = False
        return left

    # -- using it --------------------------------------------------------------------------

    def exec_prefix(self, netns: str) -> list[str]:
        """The command prefix that runs a program inside ``netns``."""
        binary = ip_binary()
        assert binary is not None
        return [binary, "netns", "exec", netns]

    def cut(self, host: Host, *, side: str = "hub") -> None:
        """Partition ``host`` from everyone: its port on the bridge goes down (``side="host"``:
        its own interface instead, which its kernel notices at once)."""
        self._set_link(host, side, "down")

    def restore(self, host: Host, *, side: str = "hub") -> None:
        self._set_link(host, side, "up")

    def _set_link(self, host: Host, side: str, state: str) -> None:
        if side == "hub":
            _ip("-n", self.hub_netns, "link", "set", host.port, state)
        elif side == "host":
            _ip("-n", host.netns, "link", "set", host.veth, state)
        else:
            raise ValueError(f"side: 'hub' or 'host', not {side!r}")

    def reachable(self, netns: str | None, address: str, port: int, timeout: float = 2.0) -> bool:
        """Whether a TCP connection from ``netns`` (None: the root namespace) to
        ``address:port`` succeeds within ``timeout``."""
        code = (
            "import socket, sys\n"
            "socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])).close()"
        )
        prefix = [] if netns is None else self.exec_prefix(netns)
        done = subprocess.run(
            [*prefix, sys.executable, "-I", "-c", code, address, str(port), str(timeout)],
            capture_output=True,
            timeout=timeout + 30,
        )
        return done.returncode == 0


@contextlib.contextmanager
def topology(labels: Sequence[str] = ("h1", "h2", "h3")) -> Iterator[Topology]:
    """A created topology, destroyed afterwards whatever happens (a leftover is an error)."""
    sweep_leftovers()
    net = Topology(labels)
    try:
        net.create()
        yield net
    finally:
        left = net.destroy()
        if left:
            raise NetnsError(f"could not remove {', '.join(left)}")
