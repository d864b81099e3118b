"""The ``[[jobs]]`` array: each job's source and targets (checked against the clouds as far as
they could be read), its limits and modes, ``[jobs.select]`` (which images) and ``[jobs.copy]``
(what besides the bytes, with cloud names resolved to tenant ids)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from transfer.config.checks import NAME_RE, REGION_RE, Checks, got, join
from transfer.config.clouds import CloudDraft, no_such_cloud
from transfer.config.settings import (
    OS_TYPES,
    VISIBILITIES,
    Backoff,
    CopyConfig,
    Endpoint,
    JobConfig,
    MismatchAction,
    SelectConfig,
    SpoolMode,
    VerifyMode,
)
from transfer.models import IMAGE_STATUSES, MEMBER_STATUS_FILTERS

# The keys of each table are the fields of its settings class, in their order.
JOB_KEYS = tuple(f.name for f in dataclasses.fields(JobConfig))
ENDPOINT_KEYS = ("cloud", "region")
SELECT_KEYS = tuple(f.name for f in dataclasses.fields(SelectConfig))
COPY_KEYS = tuple(f.name for f in dataclasses.fields(CopyConfig))


class JobReader:
    """Reads the jobs of one file against its clouds (broken clouds included).

    ``spooling`` tells, once ``jobs`` has run, whether any job asks for a spool (even a job
    with other problems): only then does the host's spool reserve matter.
    """

    def __init__(self, checks: Checks, clouds: Mapping[str, CloudDraft]) -> None:
        self.checks = checks
        self.clouds = clouds
        self.spooling = False

    def jobs(self, value: Any) -> dict[str, JobConfig]:
        checks = self.checks
        if value is None:
            return {}
        if not isinstance(value, list):
            checks.problem("jobs", f"expected an array of tables ([[jobs]]), got {got(value)}")
            return {}
        jobs: dict[str, JobConfig] = {}
        for index, body in enumerate(value):
            where = join("jobs", index)
            if not isinstance(body, dict):
                checks.problem(where, f"expected a table, got {got(body)}")
                continue
            job = self.job(body, where)
            if job is None:
                continue
            if job.name in jobs:
                checks.problem(
                    join(where, "name"), f"expected a unique job name, got {job.name!r} again"
                )
                continue
            jobs[job.name] = job
        return jobs

    def job(self, body: dict[str, Any], where: str) -> JobConfig | None:
        checks = self.checks
        checks.check_keys(body, where, JOB_KEYS)
        name = self.job_name(body, where)
        source = self.endpoint(body.get("source"), join(where, "source"))
        targets = self.targets(body.get("targets"), join(where, "targets"))
        if source is not None:
            self.check_targets_differ(source, targets, join(where, "targets"))
        transfers = checks.integer(body, "transfers", where, low=1, high=64, default=4)
        checkers = checks.integer(body, "checkers", where, low=1, high=256, default=8)
        retries = checks.integer(body, "retries", where, low=1, high=100, default=3)
        retry_backoff = checks.backoff(body, "retry_backoff", where) or Backoff()
        settle_timeout = checks.duration(body, "settle_timeout", where)
        verify = checks.choice(body, "verify", where, VerifyMode, VerifyMode.AUTO)
        on_mismatch = checks.choice(
            body, "on_mismatch", where, MismatchAction, MismatchAction.DELETE
        )
        spool = checks.choice(body, "spool", where, SpoolMode, SpoolMode.OFF)
        self.spooling = self.spooling or spool is not SpoolMode.OFF
        spool_dir_raw = checks.string(body, "spool_dir", where)
        spool_dir = checks.file_path(spool_dir_raw) if spool_dir_raw is not None else None
        bwlimit = checks.bwlimit(body, "bwlimit", where)
        max_duration = checks.duration(body, "max_duration", where)
        request_rate = checks.positive_number(body, "request_rate", where)
        prune = checks.boolean(body, "prune", where, False)
        max_delete = checks.integer(body, "max_delete", where, low=0, high=None, default=None)
        select = self.select(body.get("select"), join(where, "select"))
        copy = self.copy(body.get("copy"), join(where, "copy"))
        if name is None or source is None or not targets or select is None or copy is None:
            return None
        return JobConfig(
            name=name,
            source=source,
            targets=targets,
            transfers=transfers or 4,
            checkers=checkers or 8,
            retries=retries or 3,
            retry_backoff=retry_backoff,
            settle_timeout=120.0 if settle_timeout is None else settle_timeout,
            verify=verify,
            on_mismatch=on_mismatch,
            spool=spool,
            spool_dir=spool_dir,
            bwlimit=bwlimit,
            max_duration=max_duration,
            request_rate=request_rate,
            prune=prune,
            max_delete=max_delete,
            select=select,
            copy=copy,
        )

    def job_name(self, body: Mapping[str, Any], where: str) -> str | None:
        name = self.checks.string(body, "name", where)
        if name is None and "name" not in body:
            self.checks.problem(join(where, "name"), "expected a job name, got none")
        elif name is not None and not NAME_RE.fullmatch(name):
            self.checks.problem(
                join(where, "name"),
                "expected letters, digits, '.', '_' or '-' (at "
                f"most 64, starting with a letter or digit), got {got(name)}",
            )
            return None
        return name

    def check_targets_differ(
        self, source: Endpoint, targets: tuple[Endpoint, ...], where: str
    ) -> None:
        """No target may be the source, nor the source's tenant and region by another cloud."""
        clouds = self.clouds
        for index, target in enumerate(targets):
            if target == source or (
                target.region == source.region
                and clouds[target.cloud].tenant_id is not None
                and clouds[target.cloud].tenant_id == clouds[source.cloud].tenant_id
            ):
                self.checks.problem(
                    join(where, index),
                    f"expected a target other than the source, got {target.key} "
                    f"(the same tenant and region as {source.key})",
                )

    def endpoint(self, value: Any, where: str) -> Endpoint | None:
        checks, clouds = self.checks, self.clouds
        table = checks.table(value, where, ENDPOINT_KEYS)
        if table is None:
            return None
        if value is None:
            checks.problem(where, "expected { cloud = NAME, region = REGION }, got none")
            return None
        cloud = checks.string(table, "cloud", where)
        region = checks.string(table, "region", where)
        if cloud is None and "cloud" not in table:
            checks.problem(join(where, "cloud"), "expected a cloud name, got none")
        if region is None and "region" not in table:
            checks.problem(join(where, "region"), "expected a region name like KR1, got none")
        if cloud is None or region is None:
            return None
        ok = True
        if cloud not in clouds:
            checks.problem(join(where, "cloud"), no_such_cloud(cloud, clouds))
            ok = False
        if not REGION_RE.fullmatch(region):
            checks.problem(
                join(where, "region"), f"expected a region name like KR1, got {got(region)}"
            )
            ok = False
        region = region.upper()
        if ok and clouds[cloud].uses_token and region not in clouds[cloud].endpoints:
            checks.problem(
                join(where, "region"),
                f"cloud {cloud!r} uses a token, so its "
                f"endpoints need a {region} entry (has: "
                f"{', '.join(clouds[cloud].endpoints) or 'none'})",
            )
        return Endpoint(cloud=cloud, region=region) if ok else None

    def targets(self, value: Any, where: str) -> tuple[Endpoint, ...]:
        if isinstance(value, dict):  # a single inline table is an easy slip for a list of one
            value = [value]
        if isinstance(value, list) and not value:
            self.checks.problem(
                where,
                "expected at least one target ({ cloud = NAME, region = REGION }), got none",
            )
            return ()
        if not isinstance(value, list):
            shown = "none" if value is None else got(value)
            self.checks.problem(
                where, f"expected an array of {{ cloud = NAME, region = REGION }}, got {shown}"
            )
            return ()
        result: list[Endpoint] = []
        for index, item in enumerate(value):
            name = join(where, index)
            if not isinstance(item, dict):
                self.checks.problem(
                    name, f"expected {{ cloud = NAME, region = REGION }}, got {got(item)}"
                )
                continue
            endpoint = self.endpoint(item, name)
            if endpoint is None:
                continue
            if endpoint in result:
                self.checks.problem(name, f"expected each target once, got {endpoint.key} again")
                continue
            result.append(endpoint)
        return tuple(result)

    def select(self, value: Any, where: str) -> SelectConfig | None:
        checks = self.checks
        table = checks.table(value, where, SELECT_KEYS)
        if table is None:
            return None
        before = len(checks.problems)
        status: str | None = "active"
        if "status" in table:
            status = checks.string(
                table, "status", where, choices=sorted(IMAGE_STATUSES), lower=True
            )
        size_min = checks.integer(table, "size_min", where, low=0, high=None, default=None)
        size_max = checks.integer(table, "size_max", where, low=0, high=None, default=None)
        if size_min is not None and size_max is not None and size_min > size_max:
            checks.problem(
                join(where, "size_max"), f"expected at least size_min ({size_min}), got {size_max}"
            )
        select = SelectConfig(
            visibility=checks.string(table, "visibility", where, choices=VISIBILITIES, lower=True),
            owner=checks.string(table, "owner", where),
            status=status,
            size_min=size_min,
            size_max=size_max,
            nhncloud_product=checks.string(table, "nhncloud_product", where),
            member_status=checks.string(
                table, "member_status", where, choices=MEMBER_STATUS_FILTERS, lower=True
            ),
            tags=checks.strings(table, "tags", where),
            names=checks.strings(table, "names", where),
            exclude_names=checks.strings(table, "exclude_names", where),
            ids=checks.strings(table, "ids", where),
            exclude_ids=checks.strings(table, "exclude_ids", where),
            properties=MappingProxyType(self.properties(table.get("properties"), where)),
        )
        return select if len(checks.problems) == before else None

    def properties(self, value: Any, where: str) -> dict[str, str]:
        """``[jobs.select] properties``: KEY = "VALUE" pairs a source must carry."""
        where = join(where, "properties")
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.checks.problem(where, f'expected a table of KEY = "VALUE", got {got(value)}')
            return {}
        result: dict[str, str] = {}
        for key, wanted in value.items():
            if not isinstance(wanted, str):
                self.checks.problem(join(where, key), f"expected a string, got {got(wanted)}")
            else:
                result[key] = wanted
        return result

    def copy(self, value: Any, where: str) -> CopyConfig | None:
        checks = self.checks
        table = checks.table(value, where, COPY_KEYS)
        if table is None:
            return None
        before = len(checks.problems)
        share_with: list[str] = []
        for index, cloud in enumerate(checks.strings(table, "share_with", where)):
            tenant = self.tenant_of(cloud, join(join(where, "share_with"), index))
            if tenant is not None and tenant not in share_with:
                share_with.append(tenant)
        member_map = self.member_map(table.get("member_map"), join(where, "member_map"))
        default_os = checks.string(table, "default_os_type", where, choices=OS_TYPES, lower=True)
        copy = CopyConfig(
            properties=checks.boolean(table, "properties", where, True),
            exclude_properties=checks.strings(table, "exclude_properties", where),
            tags=checks.boolean(table, "tags", where, True),
            protected=checks.boolean(table, "protected", where, False),
            visibility=checks.boolean(table, "visibility", where, True),
            members=checks.boolean(table, "members", where, True),
            accept=checks.boolean(table, "accept", where, True),
            default_os_type=default_os or "linux",
            share_with=tuple(share_with),
            member_map=MappingProxyType(member_map),
        )
        return copy if len(checks.problems) == before else None

    def tenant_of(self, cloud: str, where: str) -> str | None:
        """The tenant id of the cloud named ``cloud``; None (and a problem) when it has none."""
        if cloud not in self.clouds:
            self.checks.problem(where, no_such_cloud(cloud, self.clouds))
            return None
        tenant = self.clouds[cloud].tenant_id
        if tenant is None:
            self.checks.problem(where, f"cloud {cloud!r} has no tenant_id to name its tenant by")
        return tenant

    def member_map(self, value: Any, where: str) -> dict[str, str]:
        """Source tenant -> target tenant; either side may name a cloud instead of a tenant id."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.checks.problem(
                where, f"expected a table of SOURCE_TENANT = TARGET_TENANT, got {got(value)}"
            )
            return {}
        result: dict[str, str] = {}
        for key, target in value.items():
            name = join(where, key)
            if not isinstance(target, str) or not target:
                self.checks.problem(
                    name, f"expected a tenant id or a cloud name, got {got(target)}"
                )
                continue
            source = self.tenant_of(key, name) if key in self.clouds else key
            resolved = self.tenant_of(target, name) if target in self.clouds else target
            if source is not None and resolved is not None:
                result[source] = resolved
        return result
