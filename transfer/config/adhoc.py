"""A config built from a command line instead of a file: ``copy`` and ``sync``'s ``SRC`` and
``DST`` arguments (``CLOUD:REGION``), each CLOUD resolved as the openstack CLI user expects,
and the one job they describe, named by a hash of what it copies so that the same line resumes
the same job.

A CLOUD is, in this order: a ``[clouds.NAME]`` of the ``-c`` config (when one is given), a
clouds.yaml entry (with secure.yaml merged over it), or ``env`` (the ``OS_*`` variables).  An
empty CLOUD (``:KR1``) is the default cloud: the entry ``--os-cloud``/``OS_CLOUD`` names, else
the ``OS_*`` variables.  An empty REGION (``nhn`` or ``nhn:``) is the cloud's ``region_name``.
Every entry goes through the same reader as a config file's clouds.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from transfer.config.checks import NAME_RE, REGION_RE, Checks
from transfer.config.clouds import CloudReader
from transfer.config.journal_log import read_journal
from transfer.config.settings import (
    Config,
    Credentials,
    Endpoint,
    JobConfig,
    LogConfig,
    SelectConfig,
)
from transfer.config.sources import load_clouds_yaml
from transfer.errors import ConfigError

#: The CLOUD that names the ``OS_*`` variables, and the label of the default cloud when it is
#: those variables.
ENV_CLOUD = "env"
JOB_PREFIX = "copy-"


@dataclasses.dataclass(frozen=True)
class Spec:
    """One ``CLOUD:REGION`` argument, as written (``label`` names it in messages)."""

    label: str  # "SRC" or "DST"
    text: str

    def parts(self) -> tuple[str, str]:
        cloud, _, region = self.text.partition(":")
        return cloud.strip(), region.strip()

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"argument {self.label} {self.text!r}: {message}")


class CloudResolver:
    """Finds the credentials a CLOUD names, each cloud read once."""

    def __init__(self, config: Config | None, environ: Mapping[str, str]) -> None:
        self.config = config
        self.environ = environ
        self.folder = config.path.absolute().parent if config is not None else None
        self.resolved: dict[str, Credentials] = {}
        self.warnings: list[str] = []

    @functools.cached_property
    def _found(self) -> tuple[Path | None, dict[str, Any]]:
        """The clouds.yaml, read only when a CLOUD is not one of the config's."""
        return load_clouds_yaml(self.environ, self.folder)

    @property
    def yaml_path(self) -> Path | None:
        return self._found[0]

    @property
    def yaml(self) -> dict[str, Any]:
        return self._found[1]

    def cloud(self, spec: Spec) -> Credentials:
        name, _ = spec.parts()
        if not name:
            entry = self.environ.get("OS_CLOUD")
            name = entry or ENV_CLOUD
            if entry and entry not in self.yaml:
                raise spec.error(f"--os-cloud/OS_CLOUD {entry!r}: {self.no_entry(entry)}")
        if name in self.resolved:
            return self.resolved[name]
        if self.config is not None and name in self.config.clouds:
            creds = self.config.clouds[name]
        elif name in self.yaml:
            creds = self.read(spec, name, {"os_cloud": name})
        elif name == ENV_CLOUD:
            creds = self.read(spec, name, {"from_env": True}, os_cloud=False)
        else:
            raise spec.error(f"no cloud named {name!r} ({self.known()})")
        self.resolved[name] = creds
        return creds

    def read(
        self, spec: Spec, name: str, body: dict[str, Any], *, os_cloud: bool = True
    ) -> Credentials:
        """The credentials of a clouds.yaml entry or of ``OS_*``, read as a config's cloud."""
        if not NAME_RE.fullmatch(name):
            raise spec.error(
                f"cloud name {name!r}: expected letters, digits, '.', '_' or '-' (at most 64)"
            )
        environ = dict(self.environ)
        if not os_cloud:
            environ.pop("OS_CLOUD", None)  # env: the variables themselves, whatever OS_CLOUD says
        checks = Checks(self.folder / "-" if self.folder else Path.cwd() / "-", environ)
        checks.file = f"argument {spec.label} {spec.text!r}"
        draft = CloudReader(checks, resolve_secrets=True, shared_mode=0).cloud(name, body, "")
        checks.raise_problems()
        self.warnings += checks.warnings
        assert draft.creds is not None  # no problems: the cloud was read in full
        return draft.creds

    def known(self) -> str:
        places = []
        if self.config is not None:
            places.append(f"clouds of {self.config.path}: {', '.join(self.config.clouds)}")
        if self.yaml_path is not None:
            places.append(f"clouds of {self.yaml_path}: {', '.join(self.yaml) or 'none'}")
        else:
            places.append("no clouds.yaml found")
        places.append(f"or {ENV_CLOUD} for the OS_* variables")
        return "; ".join(places)

    def no_entry(self, entry: str) -> str:
        if self.yaml_path is None:
            return "no clouds.yaml found"
        return f"{self.yaml_path} has no cloud named {entry!r} ({', '.join(self.yaml) or 'none'})"


def endpoint(spec: Spec, creds: Credentials) -> Endpoint:
    """The cloud and region one argument names (the cloud's ``region_name`` by default)."""
    _, region = spec.parts()
    region = region or creds.region or ""
    if not region:
        raise spec.error(
            f"no region: write {creds.name}:REGION (the cloud has no region_name to default to)"
        )
    if not REGION_RE.fullmatch(region):
        raise spec.error(f"expected a region name like KR1, got {region!r}")
    region = region.upper()
    if creds.uses_token and region not in creds.endpoints:
        known = ", ".join(creds.endpoints) or "none"
        raise spec.error(
            f"cloud {creds.name!r} uses a token and has no {region} endpoint ({known})"
        )
    return Endpoint(cloud=creds.name, region=region)


def _identity(creds: Credentials, region: str) -> dict[str, str | None]:
    """What makes a side of the job the same tenant and region on another day."""
    tenant = creds.tenant_id or creds.tenant_name or creds.application_credential_id
    return {
        "cloud": creds.name,
        "identity": creds.identity_url,
        "tenant": tenant,
        "region": region,
    }


def job_name(
    source: Mapping[str, Any], targets: Sequence[Mapping[str, Any]], selection: Mapping[str, Any]
) -> str:
    """``copy-`` and a short hash of the source, the targets and the selection, normalized (the
    targets and each list sorted), so that the same command line names the same job."""
    text = json.dumps(
        {"source": source, "targets": sorted(targets, key=json.dumps), "select": selection},
        sort_keys=True,
    )
    return JOB_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:12]


def _sides(
    resolver: CloudResolver, source: Spec, targets: Sequence[str]
) -> tuple[tuple[Endpoint, dict[str, str | None]], list[tuple[Endpoint, dict[str, str | None]]]]:
    """The source's endpoint and identity, and each target's (checked: none is the source,
    by name or by tenant and region, and none comes twice)."""
    src_end = endpoint(source, resolver.cloud(source))
    src_identity = _identity(resolver.cloud(source), src_end.region)
    sides: list[tuple[Endpoint, dict[str, str | None]]] = []
    for text in targets:
        spec = Spec("DST", text)
        creds = resolver.cloud(spec)
        end = endpoint(spec, creds)
        identity = _identity(creds, end.region)
        same = {k: v for k, v in identity.items() if k != "cloud"} == {
            k: v for k, v in src_identity.items() if k != "cloud"
        }
        if end == src_end or (same and identity["tenant"] is not None):
            raise spec.error(f"expected a target other than the source {source.text!r}")
        if any(end == seen for seen, _ in sides):
            raise spec.error("expected each target once")
        sides.append((end, identity))
    return (src_end, src_identity), sides


def adhoc_config(
    source: str,
    targets: Sequence[str],
    *,
    select: SelectConfig,
    settings: Mapping[str, Any],
    config: Config | None,
    environ: Mapping[str, str],
) -> Config:
    """The config of one command line: one job from the cloud and region ``source`` names to
    those ``targets`` name, choosing images by ``select``, with the other ``JobConfig`` fields
    of ``settings``.  With ``config`` (``-c``), its clouds come first and its journal and log
    settings are used; without, the journal is at its default path."""
    resolver = CloudResolver(config, environ)
    (src_end, src_identity), sides = _sides(resolver, Spec("SRC", source), targets)
    selection = {
        "include": sorted(select.names),
        "exclude": sorted(select.exclude_names),
        "ids": sorted(select.ids),
        "properties": dict(sorted(select.properties.items())),
    }
    name = job_name(src_identity, [identity for _, identity in sides], selection)
    job = JobConfig(
        name=name,
        source=src_end,
        targets=tuple(end for end, _ in sides),
        select=select,
        **settings,
    )
    clouds = MappingProxyType({**(config.clouds if config else {}), **resolver.resolved})
    jobs = MappingProxyType({name: job})
    if config is not None:
        return dataclasses.replace(
            config, clouds=clouds, jobs=jobs, warnings=(*config.warnings, *resolver.warnings)
        )
    return Config(
        path=Path("(command line)"),
        journal=read_journal(Checks(Path.cwd() / "-", environ), None),
        log=LogConfig(),
        clouds=clouds,
        jobs=jobs,
        warnings=tuple(resolver.warnings),
    )
