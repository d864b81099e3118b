"""``image-transfer images`` for scripts: ``-f table|json|value|csv``, ``--column``, and an image
named by its name.  ``main([...])`` in this process against one emulator for the module (its
own loop in a thread, as ``tests/client/test_images_cli.py`` runs it)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.client.test_images_cli import EmulatorThread, run, use_tenant
from transfer.cli.main import main

#: A name with a comma, a quote and a space: csv must quote it, value must keep it whole.
ODD = 'odd, "quoted" name'


@dataclass(frozen=True)
class Seeded:
    cloud: EmulatorThread
    ids: dict[str, str]  # name -> id (the twins: "twin-1" and "twin-2", both named "twin")


@pytest.fixture(scope="module")
def seeded() -> Iterator[Seeded]:
    cloud = EmulatorThread()
    emu = cloud.emu
    src = emu.tenant("demo-src")
    ids = {}
    for name, data in (("alpha", b"a" * 10), ("beta", b"b" * 2000), (ODD, b"")):
        ids[name] = cloud.call(
            emu.seed_image("KR1", src.tenant_id, data=data, name=name, purpose=name[:3])
        )
    for n in (1, 2):
        ids[f"twin-{n}"] = cloud.call(emu.seed_image("KR1", src.tenant_id, data=b"t", name="twin"))
    try:
        yield Seeded(cloud, ids)
    finally:
        cloud.close()


@pytest.fixture
def tenant(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    use_tenant(monkeypatch, seeded.cloud.emu, seeded.cloud.emu.tenant("demo-src"))
    return seeded


LIST = ("list", "--sort-key", "name", "--sort-dir", "asc")


def test_each_format_of_images_list(tenant: Seeded, capsys: pytest.CaptureFixture[str]) -> None:
    ids = tenant.ids
    code, out, _ = run(capsys, *LIST)
    assert code == 0
    assert out.splitlines()[0].split() == ["ID", "NAME", "STATUS", "VISIBILITY", "SIZE", "DISK"]
    assert [line.split()[1] for line in out.splitlines()[1:3]] == ["alpha", "beta"]

    code, out, _ = run(capsys, *LIST, "-f", "json")
    assert code == 0
    document = json.loads(out)
    assert document["schema_version"] == 1
    listed = {i["name"]: i for i in document["images"]}
    assert listed["beta"]["id"] == ids["beta"] and listed["beta"]["size"] == 2000
    assert listed["alpha"]["purpose"] == "alp"  # without --column: the whole image

    code, out, _ = run(capsys, *LIST, "-f", "value", "--column", "name", "--column", "size")
    assert code == 0
    assert out.splitlines() == ["alpha 10", "beta 2000", f"{ODD} 0", "twin 1", "twin 1"]

    code, out, _ = run(capsys, *LIST, "-f", "value", "--column", "id")
    assert out.split()[:3] == [ids["alpha"], ids["beta"], ids[ODD]]
    assert set(out.split()[3:]) == {ids["twin-1"], ids["twin-2"]}

    code, out, _ = run(capsys, *LIST, "--json", "--column", "size", "--column", "ID")
    assert code == 0
    images = json.loads(out)["images"]
    assert [list(i) for i in images] == [["size", "id"]] * 5  # only those, in that order
    assert images[0] == {"size": 10, "id": ids["alpha"]}

    code, out, _ = run(capsys, *LIST, "-f", "table", "--column", "name", "--column", "status")
    assert out.splitlines()[0].split() == ["NAME", "STATUS"]
    assert [line.split()[-1] for line in out.splitlines()[1:]] == ["active"] * 5


def test_c_column_as_the_openstack_cli_has_it_and_c_config_beside_it(
    tenant: Seeded, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(capsys, *LIST, "-f", "value", "-c", "name", "-c", "SIZE")
    assert code == 0
    assert out.splitlines() == ["alpha 10", "beta 2000", f"{ODD} 0", "twin 1", "twin 1"]
    # A value that is no column is the config file, as before: here one that is not there.
    missing = tmp_path / "nope.toml"
    code, _, err = run(capsys, *LIST, "-c", str(missing), "--cloud", "x", "-c", "name")
    assert code == 2 and f"{missing}: file not found" in err


def test_csv_reads_back_with_the_csv_module(
    tenant: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys, *LIST, "-f", "csv", "--column", "name", "--column", "size", "--column", "tags"
    )
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["name", "size", "tags"]
    assert rows[1:4] == [["alpha", "10", ""], ["beta", "2000", ""], [ODD, "0", ""]]
    # Without --column: the list's own columns, sizes in bytes.
    code, out, _ = run(capsys, *LIST, "-f", "csv")
    records = list(csv.DictReader(io.StringIO(out)))
    assert list(records[0]) == ["id", "name", "status", "visibility", "size", "disk_format"]
    assert records[1]["id"] == tenant.ids["beta"] and records[1]["size"] == "2000"


def test_an_unknown_column_is_a_usage_error_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["images", "list", "--column", "nmae"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "unknown column 'nmae'" in err and "known columns: id, name, status" in err
    with pytest.raises(SystemExit) as exited:
        main(["images", "show", "x", "-f", "csv"])
    assert exited.value.code == 2  # a single record has no csv form


def test_show_by_name_unique_ambiguous_and_missing(
    tenant: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = tenant.ids
    code, out, _ = run(capsys, "show", "beta", "-f", "json")
    assert code == 0
    document = json.loads(out)
    assert document["schema_version"] == 1 and document["image"]["id"] == ids["beta"]

    code, out, _ = run(capsys, "show", ODD, "-f", "value", "--column", "id", "--column", "size")
    assert (code, out.splitlines()) == (0, [ids[ODD], "0"])
    code, out, _ = run(capsys, "show", ids["alpha"], "--column", "properties")
    key, value = out.split(None, 1)
    assert (code, key, json.loads(value)["purpose"]) == (0, "properties", "alp")

    code, out, err = run(capsys, "show", "twin")
    assert code == 1 and out == ""
    assert "2 images in KR1 are named 'twin'" in err
    assert ids["twin-1"] in err and ids["twin-2"] in err

    code, out, err = run(capsys, "show", "no-such-image")
    assert code == 1 and out == ""
    assert (
        err.strip()
        == "image-transfer: error: no image named 'no-such-image' in KR1, nor with that id"
    )


def test_delete_by_an_ambiguous_name_deletes_nothing(
    tenant: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "delete", "twin")
    assert code == 1 and "named 'twin'" in err
    code, out, _ = run(capsys, "list", "--name", "twin", "-f", "value", "--column", "id")
    assert sorted(out.split()) == sorted([tenant.ids["twin-1"], tenant.ids["twin-2"]])
    # A tag by name reaches the one image of that name.
    code, out, _ = run(capsys, "tag", "alpha", "by-name")
    assert code == 0 and tenant.ids["alpha"] in out
    code, out, _ = run(capsys, "show", "alpha", "-f", "value", "--column", "tags")
    assert out.strip() == "by-name"


def test_v_is_debug_level_before_or_after_the_subcommand(
    tenant: Seeded, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "list", "-f", "value", "--column", "name", "-v")
    assert code == 0 and "alpha" in out
    assert "http.request" in err and "/v2/images" in err and "debug" in err
    code, _, err = run(capsys, "-v", "show", "alpha")
    assert code == 0 and "http.request" in err
    code, _, err = run(capsys, "show", "alpha")
    assert code == 0 and "http.request" not in err
