"""Where clouds.yaml and secure.yaml are found (openstacksdk's order), and the config a
``copy`` line builds: its job name stays the same for the same line however it is spelled, and
changes with what it copies.  Plain files and data: no network."""

from __future__ import annotations

from pathlib import Path

import pytest

from transfer.config.adhoc import adhoc_config
from transfer.config.loader import load_config
from transfer.config.settings import SelectConfig
from transfer.config.sources import load_clouds_yaml
from transfer.errors import ConfigError


def _entry(tenant: str) -> str:
    auth = f"{{auth_url: 'https://id.example/v2.0', username: u, project_id: {tenant}}}"
    return f"clouds:\n  a:\n    auth: {auth}\n"


def test_the_search_order_and_secure_yaml_merged_over_clouds_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".config" / "openstack").mkdir(parents=True)
    work.mkdir()
    monkeypatch.chdir(work)
    env = {"HOME": str(home)}
    (home / ".config" / "openstack" / "clouds.yml").write_text(_entry("t-home"))
    assert load_clouds_yaml(env)[1]["a"]["auth"]["project_id"] == "t-home"  # .yml counts too
    (work / "clouds.yaml").write_text(_entry("t-cwd"))
    path, clouds = load_clouds_yaml(env)
    assert path == work / "clouds.yaml" and clouds["a"]["auth"]["project_id"] == "t-cwd"
    override = tmp_path / "chosen.yaml"
    override.write_text(_entry("t-override"))
    env["OS_CLIENT_CONFIG_FILE"] = str(override)
    assert load_clouds_yaml(env)[1]["a"]["auth"]["project_id"] == "t-override"

    (home / ".config" / "openstack" / "secure.yaml").write_text(
        "clouds:\n  a:\n    auth: {password: from-secure}\n"
    )
    auth = load_clouds_yaml(env)[1]["a"]["auth"]
    assert auth == {
        "auth_url": "https://id.example/v2.0",
        "username": "u",
        "project_id": "t-override",
        "password": "from-secure",
    }
    (work / "secure.json").write_text('{"clouds": {"a": {"auth": {"password": "cwd-json"}}}}')
    assert load_clouds_yaml(env)[1]["a"]["auth"]["password"] == "cwd-json"  # cwd first


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        "".join(
            f'[clouds.{name}]\nusername = "u"\ntenant_id = "{tenant}"\npassword_env = "PW"\n'
            for name, tenant in (("src", "t1"), ("dst", "t2"), ("twin", "t1"))
        )
    )
    return path


def _build(config_path: Path, source: str, *targets: str, **select: object) -> str:
    environ = {"PW": "secret", "HOME": str(config_path.parent)}
    config = load_config(config_path, environ=environ)
    built = adhoc_config(
        source,
        targets,
        select=SelectConfig(**select),  # type: ignore[arg-type]
        settings={},
        config=config,
        environ=environ,
    )
    (name,) = built.jobs
    assert built.clouds.keys() == {"src", "dst", "twin"}
    assert built.journal == config.journal
    return name


def test_the_job_name_follows_what_is_copied_not_how_it_is_written(tmp_path: Path) -> None:
    path = _config(tmp_path)
    name = _build(path, "src:KR1", "dst:KR1", "src:KR2", names=("a*", "b*"))
    assert name.startswith("copy-")
    assert _build(path, "src:kr1", "src:KR2", "dst:KR1", names=("b*", "a*")) == name
    assert _build(path, "src:KR1", "dst:KR1", "src:KR2", names=("a*",)) != name
    assert _build(path, "src:KR1", "dst:KR1", names=("a*", "b*")) != name
    assert _build(path, "src:KR1", "dst:KR1", "src:KR2", names=("a*", "b*"), ids=("x",)) != name


def test_a_target_that_is_the_source_by_another_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _build(_config(tmp_path), "src:KR1", "twin:KR1")
    assert str(caught.value) == (
        "argument DST 'twin:KR1': expected a target other than the source 'src:KR1'"
    )
