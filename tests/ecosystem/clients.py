"""The three clients as a tour drives them: ``run(op, who, **args)`` does one step as one of the
tour's users (``owner``, ``member``, ``outsider``) and returns what the user saw.

Each client is configured only as a user configures it for a real cloud (auth URL, project,
user, password, region; Keystone v3 adds the domains), never with an image endpoint: the
clients find it in the catalog.  ``glance`` and ``openstack`` are one command per step;
openstacksdk is one process per cloud (``sdk_agent.py``) taking one step per line.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from interop.clients import ClientsInstall
from tests.ecosystem.cloud import DOMAIN, REGION, EmulatorCloud

AGENT = Path(__file__).resolve().parent / "sdk_agent.py"
WHO = ("owner", "member", "outsider")
STEP_TIMEOUT = 120.0
Args = dict[str, str]


@dataclass(frozen=True)
class Outcome:
    """What one step showed its user: exit code, standard output, standard error."""

    command: str
    code: int
    out: str
    err: str
    seconds: float

    def __str__(self) -> str:
        return (
            f"$ {self.command}  -> exit {self.code} in {self.seconds:.1f}s\n"
            f"{self.out.strip()}\n{self.err.strip()}".rstrip()
        )


@dataclass
class Client:
    name: str
    cloud: EmulatorCloud
    install: ClientsInstall
    work: Path
    log: list[Outcome] = field(default_factory=list)

    def tenant_name(self, who: str) -> str:
        return f"{self.name}-{who}"

    def project_id(self, who: str) -> str:
        return self.cloud.tenant(self.tenant_name(who)).tenant_id

    async def run(self, op: str, who: str = "owner", **args: str) -> Outcome:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class Cli(Client):
    """A command-line client: one process per step, its user in OS_* variables."""

    program = ""
    bare_root_on_v3 = False
    by_project_id = False
    commands: ClassVar[dict[str, Callable[[Args], list[str]]]] = {}

    def user_env(self, who: str) -> dict[str, str]:
        tenant = self.cloud.tenant(self.tenant_name(who))
        env = self.install.env()
        env.update(
            OS_AUTH_URL=self.cloud.auth_url,
            OS_USERNAME=tenant.username,
            OS_PASSWORD=tenant.password,
            OS_REGION_NAME=REGION,
        )
        if self.by_project_id:
            env["OS_PROJECT_ID"] = tenant.tenant_id
        else:
            env["OS_PROJECT_NAME"] = tenant.name
        if self.cloud.kind.identity == "v3":
            env.update(
                OS_IDENTITY_API_VERSION="3",
                OS_USER_DOMAIN_NAME=DOMAIN,
                OS_PROJECT_DOMAIN_NAME=DOMAIN,
            )
            if self.bare_root_on_v3:
                env["OS_AUTH_URL"] = self.cloud.root
        return env

    async def run(self, op: str, who: str = "owner", **args: str) -> Outcome:
        argv = [str(self.install.bin(self.program)), *self.commands[op](args)]
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=self.user_env(who),
            cwd=self.work,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        shown = " ".join([self.program, *argv[1:]])
        try:
            out, err = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.communicate()
            raise AssertionError(f"`{shown}` did not finish in {STEP_TIMEOUT:.0f}s") from None
        outcome = Outcome(
            f"[{who}] {shown}",
            proc.returncode or 0,
            out.decode(),
            err.decode(),
            time.monotonic() - started,
        )
        self.log.append(outcome)
        return outcome


def _props(args: Args, flag: str) -> list[str]:
    pairs = json.loads(args.get("properties", "{}"))
    return [part for key, value in pairs.items() for part in (flag, f"{key}={value}")]


class GlanceCli(Cli):
    program = "glance"
    by_project_id = True
    commands: ClassVar[dict[str, Callable[[Args], list[str]]]] = {
        "list": lambda a: ["image-list", "--page-size", a["limit"]],
        "create": lambda a: [
            "image-create",
            "--name",
            a["name"],
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            a["path"],
            *_props(a, "--property"),
        ],
        "show": lambda a: ["image-show", a["id"]],
        "download": lambda a: ["image-download", "--file", a["path"], a["id"]],
        "update": lambda a: [
            "image-update",
            *_props(a, "--property"),
            *(["--visibility", a["visibility"]] if "visibility" in a else []),
            a["id"],
        ],
        "tag-add": lambda a: ["image-tag-update", a["id"], a["tag"]],
        "tag-remove": lambda a: ["image-tag-delete", a["id"], a["tag"]],
        "member-add": lambda a: ["member-create", a["id"], a["member"]],
        "member-accept": lambda a: ["member-update", a["id"], a["member"], "accepted"],
        "member-list": lambda a: ["member-list", "--image-id", a["id"]],
        "member-remove": lambda a: ["member-delete", a["id"], a["member"]],
        "delete": lambda a: ["image-delete", a["id"]],
    }


class OpenStackCli(Cli):
    program = "openstack"
    bare_root_on_v3 = True
    commands: ClassVar[dict[str, Callable[[Args], list[str]]]] = {
        # No --limit: openstackclient then lists one page only; the cloud's page size is smaller
        # than the images, so the SDK under it follows the `next` links.
        "list": lambda a: ["image", "list", "-f", "json"],
        "create": lambda a: [
            "image",
            "create",
            "--disk-format",
            "raw",
            "--container-format",
            "bare",
            "--file",
            a["path"],
            *_props(a, "--property"),
            "-f",
            "json",
            a["name"],
        ],
        "show": lambda a: ["image", "show", "-f", "json", a["id"]],
        "download": lambda a: ["image", "save", "--file", a["path"], a["id"]],
        "update": lambda a: [
            "image",
            "set",
            *_props(a, "--property"),
            *([f"--{a['visibility']}"] if "visibility" in a else []),
            a["id"],
        ],
        "tag-add": lambda a: ["image", "set", "--tag", a["tag"], a["id"]],
        "tag-remove": lambda a: ["image", "unset", "--tag", a["tag"], a["id"]],
        "member-add": lambda a: ["image", "add", "project", a["id"], a["member"]],
        "member-accept": lambda a: ["image", "set", "--accept", a["id"]],
        "member-list": lambda a: ["image", "member", "list", "-f", "json", a["id"]],
        "member-remove": lambda a: ["image", "remove", "project", a["id"], a["member"]],
        "delete": lambda a: ["image", "delete", a["id"]],
    }


class Sdk(Client):
    """openstacksdk: one agent process for the tour, configured by a clouds.yaml."""

    proc: asyncio.subprocess.Process | None = None

    def clouds_yaml(self) -> Path:
        v3 = self.cloud.kind.identity == "v3"
        clouds = {}
        for who in WHO:
            tenant = self.cloud.tenant(self.tenant_name(who))
            auth = {
                # The bare root on v3: keystoneauth discovers the version.
                "auth_url": self.cloud.root if v3 else self.cloud.auth_url,
                "username": tenant.username,
                "password": tenant.password,
                "project_name": tenant.name,
            }
            if v3:
                auth.update(user_domain_name=DOMAIN, project_domain_name=DOMAIN)
            clouds[f"{self.name}-{who}"] = {"auth": auth, "region_name": REGION}
        path = self.work / "clouds.yaml"
        path.write_text(json.dumps({"clouds": clouds}, indent=2))  # JSON is YAML
        return path

    async def start(self) -> None:
        env = self.install.env()
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml())
        self.proc = await asyncio.create_subprocess_exec(
            str(self.install.python),
            str(AGENT),
            self.name,
            env=env,
            cwd=self.work,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def run(self, op: str, who: str = "owner", **args: str) -> Outcome:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        request: dict[str, object] = {"op": op, "as": who, **args}
        if op == "create":
            request["properties"] = json.loads(args.get("properties", "{}"))
        if op == "update":
            fields = json.loads(args.get("properties", "{}"))
            fields.update({"visibility": args["visibility"]} if "visibility" in args else {})
            request["fields"] = fields
        started = time.monotonic()
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        await self.proc.stdin.drain()
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), STEP_TIMEOUT)
        except TimeoutError:
            self.proc.kill()
            await self.proc.communicate()
            raise AssertionError(f"sdk {op} did not finish in {STEP_TIMEOUT:.0f}s") from None
        if not line:  # it crashed: its traceback is on stderr
            err = (await self.proc.communicate())[1].decode()
            outcome = Outcome(f"[{who}] sdk {op}", 1, "", err, time.monotonic() - started)
        else:
            answer = json.loads(line)
            shown = f"[{who}] sdk {op} {json.dumps(args)}"
            code = 0 if answer["ok"] else 1
            said = str(answer["out"])
            err = "" if answer["ok"] else said
            if not answer["ok"] and not said.startswith(answer["error"]):
                err = f"{answer['error']}: {said}"
            out = answer["out"] if answer["ok"] else ""
            outcome = Outcome(shown, code, out, err, time.monotonic() - started)
        self.log.append(outcome)
        return outcome

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            _, err = await asyncio.wait_for(self.proc.communicate(), 30)
            if err.strip():
                self.log.append(Outcome("sdk agent stderr", 0, "", err.decode(), 0.0))


CLIENTS: dict[str, type[Client]] = {"glance": GlanceCli, "openstack": OpenStackCli, "sdk": Sdk}
