"""Config files as the loader's tests write them: the two password clouds and the one job
between them that most cases start from and then break, and writing a file the way an operator
should (readable by its owner only, so no test meets the permission warnings by accident)."""

from __future__ import annotations

from pathlib import Path


def two_clouds_and_a_job(
    *,
    password_envs: tuple[str, str],
    tenant_ids: tuple[str, str] = ("t-src", "t-dst"),
    username: str = "op",
    identity_url: str | None = None,
    job: str = "copy",
    source_region: str = "KR1",
) -> str:
    """``[clouds.src]`` and ``[clouds.dst]`` (password mode), then one ``[[jobs]]`` named
    ``job`` copying src/``source_region`` to dst/KR2; the job's table comes last, so keys
    appended to the text are the job's."""
    tables = []
    for name, tenant_id, password_env in zip(
        ("src", "dst"), tenant_ids, password_envs, strict=True
    ):
        lines = [f"[clouds.{name}]"]
        if identity_url is not None:
            lines.append(f'identity_url = "{identity_url}"')
        lines += [
            f'tenant_id = "{tenant_id}"',
            f'username = "{username}"',
            f'password_env = "{password_env}"',
        ]
        tables.append("\n".join(lines) + "\n")
    tables.append(
        f'[[jobs]]\nname = "{job}"\n'
        f'source = {{ cloud = "src", region = "{source_region}" }}\n'
        'targets = [ { cloud = "dst", region = "KR2" } ]\n'
    )
    return "\n".join(tables)


def write_private(path: Path, content: str | bytes) -> Path:
    """Write ``content`` to ``path`` with mode 600; returns ``path``."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    path.chmod(0o600)
    return path
