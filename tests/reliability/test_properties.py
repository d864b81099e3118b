"""Property-based tests: the config loader on random documents, the JSON-patch builder on
random source/target pairs.

The loader must answer any TOML document with a ``Config`` or a ``ConfigError`` whose every
problem starts with the file name, and never show a secret.  A patch from ``build_patch``,
applied by a small RFC 6902 applier the way Glance applies it, must give the target exactly the
desired metadata in one step, and never touch a reserved or excluded key.
"""

from __future__ import annotations

import datetime as dt
import math
import tempfile
import tomllib
from collections.abc import Iterator, Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.unit.factories import image
from transfer.config.loader import load_config
from transfer.config.settings import Config, CopyConfig
from transfer.errors import ConfigError
from transfer.metadata import build_patch, desired_target, metadata_differences, property_string
from transfer.models import CORE_KEYS, READ_ONLY_KEYS, Image, PatchOp, is_reserved_key

# -- a TOML writer (tomllib only reads) ---------------------------------------------------------


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def dumps(document: Mapping[str, Any]) -> str:
    """A TOML document with every value inline (tables as inline tables)."""
    return "".join(f"{_string(key)} = {_value(value)}\n" for key, value in document.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) and a == b)


# -- random config documents --------------------------------------------------------------------

ENV_SECRET = "PwEnv-7c1e-secret"
FILE_SECRET = "PwFile-93d0-secret"
INLINE_SECRET = "PwInline-5aa1-secret"
YAML_SECRET = "PwYaml-61bf-secret"
TOKEN_SECRET = "TokEnv-0d2a-secret"
SECRETS = (ENV_SECRET, FILE_SECRET, INLINE_SECRET, YAML_SECRET, TOKEN_SECRET)

text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(),
    text,
    st.dates(),
    st.datetimes(),
    st.times(),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)


def maybe(*good: Any) -> st.SearchStrategy[Any]:
    """A plausible value most of the time, anything TOML can hold otherwise."""
    return st.one_of(st.sampled_from(good), junk)


def table(fields: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Some of the known keys, plus now and then a key nobody knows."""
    return st.fixed_dictionaries(
        {},
        optional={**dict(fields), **{key: junk for key in ("pasword", "tranfers", "x", "", "é")}},
    )


endpoint = table(
    {"cloud": maybe("src", "dst", "tok", "nope"), "region": maybe("KR1", "kr2", "K 1")}
)
cloud = table(
    {
        "identity_url": maybe("http://127.0.0.1:9/v2.0", "https://id.example/v2.0", "ftp://x"),
        "tenant_id": maybe("t-src", "t-dst", ""),
        "tenant_name": maybe("src", ""),
        "username": maybe("op"),
        "password": maybe(INLINE_SECRET, ""),
        "password_env": maybe("PW_SET", "PW_EMPTY", "PW_UNSET", "bad name"),
        "password_file": maybe(
            "pw.txt", "empty.txt", "missing.txt", "folder", "binary.txt", "a\x00"
        ),
        "token_env": maybe("TOKEN_SET", "PW_UNSET"),
        "token_file": maybe("pw.txt", "missing.txt"),
        "ca_bundle": maybe("pw.txt", "missing.pem"),
        "insecure": maybe(True, False),
        "endpoints": st.one_of(
            st.dictionaries(st.sampled_from(["KR1", "kr2", "K 1", ""]), maybe("http://h:1", "x")),
            junk,
        ),
        "os_cloud": maybe("nhn", "broken", "absent"),
        "from_env": maybe(True, False),
    }
)
job = table(
    {
        "name": maybe("copy", "copy", "bad name", ""),
        "source": st.one_of(endpoint, junk),
        "targets": st.one_of(st.lists(st.one_of(endpoint, junk), max_size=2), endpoint, junk),
        "transfers": maybe(1, 4, 0, 65),
        "checkers": maybe(8, 0),
        "retries": maybe(3, 0),
        "verify": maybe("auto", "FULL", "sometimes"),
        "on_mismatch": maybe("delete", "quarantine"),
        "spool": maybe("off", "auto", "always"),
        "spool_dir": maybe("spool", ""),
        "bwlimit": maybe("10M", "off", "01:00,5M 07:00,off", "25:00,1M", "fast", ""),
        "max_duration": maybe("6h", "1h30m", "90", 0, -1, "forever"),
        "request_rate": maybe(5, 0.5, 0, -1),
        "prune": maybe(True, False),
        "max_delete": maybe(0, 10, -1),
        "select": st.one_of(
            table(
                {
                    "visibility": maybe("private", "shared", "public", "secret"),
                    "status": maybe("active", "queued", "gone"),
                    "size_min": maybe(0, 10, -1),
                    "size_max": maybe(5, 100),
                    "member_status": maybe("all", "accepted", "maybe"),
                    "tags": maybe(["a"], "a", [1], []),
                    "names": maybe(["web-*"], "x", [""]),
                    "ids": maybe(["id-1"]),
                }
            ),
            junk,
        ),
        "copy": st.one_of(
            table(
                {
                    "properties": maybe(True, False),
                    "exclude_properties": maybe(["internal_*"], [1]),
                    "share_with": maybe(["dst"], ["nope"], "src"),
                    "member_map": st.one_of(
                        st.dictionaries(st.sampled_from(["src", "t-x", ""]), maybe("dst", "")),
                        junk,
                    ),
                    "default_os_type": maybe("linux", "WINDOWS", "bsd"),
                }
            ),
            junk,
        ),
    }
)
documents = table(
    {
        "journal": st.one_of(table({"path": maybe("journal.db", "")}), junk),
        "log": st.one_of(table({"level": maybe("debug", "LOUD"), "format": maybe("json")}), junk),
        "clouds": st.one_of(
            st.dictionaries(st.sampled_from(["src", "dst", "tok", "bad name"]), cloud, max_size=2),
            junk,
        ),
        "jobs": st.one_of(st.lists(st.one_of(job, junk), max_size=2), job, junk),
    }
)


#: A valid document that ``near_valid`` breaks in a few places (deep paths get explored too).
VALID: dict[str, Any] = {
    "journal": {"path": "journal.db"},
    "log": {"level": "info", "format": "json"},
    "clouds": {
        "src": {
            "identity_url": "http://127.0.0.1:9/v2.0",
            "tenant_id": "t-src",
            "username": "op",
            "password_env": "PW_SET",
        },
        "dst": {"tenant_name": "dst", "username": "op", "password_file": "pw.txt"},
        "tok": {
            "tenant_id": "t-tok",
            "token_env": "TOKEN_SET",
            "endpoints": {"KR1": "http://127.0.0.1:9", "kr2": "http://127.0.0.1:9/v2"},
        },
        "yaml": {"os_cloud": "nhn"},
    },
    "jobs": [
        {
            "name": "copy",
            "source": {"cloud": "src", "region": "KR1"},
            "targets": [{"cloud": "dst", "region": "KR2"}, {"cloud": "tok", "region": "kr2"}],
            "transfers": 2,
            "bwlimit": "01:00,5M 07:00,off",
            "max_duration": "1h30m",
            "select": {"visibility": "shared", "tags": ["golden"], "names": ["web-*"]},
            "copy": {"share_with": ["tok"], "member_map": {"src": "tok", "t-x": "t-y"}},
        }
    ],
}
PLAUSIBLE = [
    "KR1", "kr2", "src", "dst", "tok", "yaml", "copy", "pw.txt", "missing.txt", "folder",
    "binary.txt", "pw\x00.txt", "PW_SET", "PW_UNSET", "PW_EMPTY", "http://h:1", "ftp://h",
    "10M", "off", "6h", 0, -1, 1, 65, True, False, [], {}, [{"cloud": "src", "region": "KR2"}],
]  # fmt: skip

SECRET_SOURCES = st.sampled_from(
    [
        ("password_file", "pw.txt"),
        ("password_file", "empty.txt"),
        ("password_file", "missing.txt"),
        ("password_file", "folder"),
        ("password_file", "binary.txt"),
        ("password_file", "pw\x00.txt"),
        ("password_file", ""),
        ("password_env", "PW_SET"),
        ("password_env", "PW_EMPTY"),
        ("password_env", "PW_UNSET"),
        ("password_env", "PW\x00SET"),
        ("password", INLINE_SECRET),
        ("password", 5),
        ("token_file", "pw.txt"),
        ("token_file", "pw\x00.txt"),
    ]
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for key, child in children:
        yield from _paths(child, (*prefix, key))


def with_dst_secret(key: str, value: Any) -> dict[str, Any]:
    """VALID with the dst cloud's secret read from somewhere else."""
    document = deepcopy(VALID)
    dst = document["clouds"]["dst"]
    del dst["password_file"]
    dst[key] = value
    return document


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = deepcopy(VALID)
    # Copies: a sampled list or table put into the document and then appended to must not
    # change PLAUSIBLE itself (generation would depend on earlier examples, and a list could
    # end up inside itself).
    values = st.one_of(st.sampled_from(PLAUSIBLE), junk).map(deepcopy)
    if draw(st.booleans()):
        # Where a secret comes from is the likeliest thing to get wrong: vary it often.
        document = with_dst_secret(*draw(SECRET_SOURCES))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(_paths(document))))
        parent: Any = document
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["pasword", "tranfers", "region", "x"]))] = draw(values)
        else:
            parent.append(draw(values))
    return document


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """Files the random documents may name: good, empty, binary and missing secrets."""
    with tempfile.TemporaryDirectory(prefix="reliability-config-") as name:
        root = Path(name)
        (root / "pw.txt").write_text(FILE_SECRET + "\n")
        (root / "empty.txt").write_text("")
        (root / "binary.txt").write_bytes(b"\xff\xfe" + FILE_SECRET.encode())
        (root / "folder").mkdir()
        (root / "clouds.yaml").write_text(
            "clouds:\n"
            "  nhn:\n"
            "    auth: {auth_url: 'http://127.0.0.1:9/v2.0', username: op, "
            f"password: {YAML_SECRET}, project_id: t-yaml}}\n"
            "    region_name: KR1\n"
            "  broken: 5\n"
        )
        for path in root.iterdir():
            path.chmod(0o700 if path.is_dir() else 0o600)
        yield root


def environ(root: Path) -> dict[str, str]:
    return {
        "HOME": str(root),
        "PW_SET": ENV_SECRET,
        "PW_EMPTY": "",
        "TOKEN_SET": TOKEN_SECRET,
        "OS_CLIENT_CONFIG_FILE": str(root / "clouds.yaml"),
        "OS_AUTH_URL": "http://127.0.0.1:9/v2.0",
        "OS_USERNAME": "op",
        "OS_PASSWORD": ENV_SECRET,
        "OS_PROJECT_ID": "t-env",
    }


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(document=st.one_of(documents, near_valid()), with_secrets=st.booleans())
@example(document=with_dst_secret("password_file", "pw\x00.txt"), with_secrets=True)
@example(document=with_dst_secret("token_file", "folder"), with_secrets=True)
def test_any_document_gives_a_config_or_problems_that_start_with_the_file_name(
    folder: Path, document: dict[str, Any], with_secrets: bool
) -> None:
    source = dumps(document)
    assert _same(tomllib.loads(source), document), source  # the writer itself is right
    path = folder / "config.toml"
    path.write_text(source)
    path.chmod(0o600)
    env = environ(folder)
    try:
        config = load_config(path, environ=env, resolve_secrets=with_secrets)
    except ConfigError as exc:
        assert exc.problems, str(exc)
        said = [str(exc), *exc.problems]
        assert all(p.startswith(f"{path}: ") for p in said), said
    else:
        assert isinstance(config, Config)
        assert all(w.startswith(f"{path}: ") for w in config.warnings), config.warnings
        said = [repr(config), *config.warnings]
    for secret in SECRETS:
        assert not any(secret in line for line in said), (secret, said)


# -- the JSON-patch builder ---------------------------------------------------------------------


def _decode(pointer: str) -> str:
    assert pointer.startswith("/"), pointer
    assert "/" not in pointer[1:], f"{pointer}: the API takes top-level paths only"
    return pointer[1:].replace("~1", "/").replace("~0", "~")


def apply_patch(document: Mapping[str, Any], ops: list[PatchOp]) -> dict[str, Any]:
    """RFC 6902 ``add``/``remove`` on top-level members, atomic, as Glance applies them:
    removing a missing member fails the whole patch (409), ``replace`` needs the member."""
    result = dict(document)
    for op in ops:
        key = _decode(op["path"])
        if op["op"] == "add":
            result[key] = op["value"]
        elif op["op"] == "replace":
            if key not in result:
                raise AssertionError(f"409: replace of missing {key!r} in {ops}")
            result[key] = op["value"]
        elif op["op"] == "remove":
            if key not in result:
                raise AssertionError(f"409: remove of missing {key!r} in {ops}")
            del result[key]
        else:
            raise AssertionError(f"unknown op {op}")
    return result


#: Keys a patch may name among Glance's own: the builder sets these on purpose.
PATCHABLE_CORE = frozenset({"name", "min_disk", "min_ram", "visibility"})

prop_keys = st.one_of(
    st.text(st.sampled_from("ab/~_-.xé"), max_size=5),
    st.sampled_from(
        [
            "os_type",
            "os_distro",
            "internal_note",
            "os_glance_importing_to_stores",
            "os_glance_failed_import",
            "image_transfer_job",
            "image_transfer_source_id",
            "nhncloud_allow_download",
            "a" * 256,
        ]
    ),
)
prop_values = st.one_of(
    text,
    st.sampled_from(["linux", "windows", "true", "5"]),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 2), max_size=2),
)
copies = st.builds(
    CopyConfig,
    properties=st.booleans(),
    exclude_properties=st.lists(
        st.sampled_from(["internal_*", "a?", "[ab]*", "os_*"]), max_size=2
    ).map(tuple),
    visibility=st.booleans(),
    share_with=st.lists(st.sampled_from(["t-partner"]), max_size=1).map(tuple),
    default_os_type=st.sampled_from(["linux", "windows"]),
)
reserved_values = st.dictionaries(
    st.sampled_from(["os_glance_importing_to_stores", "stores", "direct_url", "locations"]),
    st.sampled_from(["x", "y"]),
    max_size=2,
)


@st.composite
def pairs(draw: st.DrawFn) -> tuple[Image, Image, CopyConfig, str]:
    """A source, a target near its desired state (or far from it), and the job's settings."""
    copy = draw(copies)
    props = draw(st.dictionaries(prop_keys, prop_values, max_size=6))
    props = {k: v for k, v in props.items() if k not in CORE_KEYS and k != "properties"}
    src = image(
        "src-1",
        name=draw(st.one_of(st.none(), text)),
        data=b"payload",
        visibility=draw(st.sampled_from(["private", "shared"])),
        tags=("golden",),
        **props,
    )
    members = draw(st.lists(st.sampled_from(["t-partner", "t-other"]), max_size=2))
    desired = desired_target(src, job="job", source_region="KR1", copy=copy, source_members=members)
    # The target: what a create with the desired fields made, then drifted.
    raw: dict[str, Any] = dict(desired.create_fields)
    for key in draw(st.lists(st.sampled_from(sorted(desired.properties) or ["x"]), max_size=3)):
        raw.pop(key, None)
    extra = draw(st.dictionaries(prop_keys, prop_values, max_size=4))
    raw.update({k: v for k, v in extra.items() if k not in CORE_KEYS and k != "properties"})
    raw.update(draw(reserved_values))
    if draw(st.booleans()):
        raw["name"] = draw(st.one_of(st.none(), text))
    if draw(st.booleans()):
        raw["min_disk"] = draw(st.integers(0, 3))
    if draw(st.booleans()):
        raw["min_ram"] = draw(st.integers(0, 3))
    visibility = draw(st.sampled_from(["private", "shared", "community", "public"]))
    name = raw.pop("name")
    raw.pop("visibility", None)
    target = image("tgt-1", name=name, data=b"payload", visibility=visibility, **raw)
    return src, target, copy, ",".join(sorted(members))


@settings(max_examples=400, deadline=None)
@given(case=pairs())
def test_applying_the_patch_gives_the_desired_metadata_and_spares_reserved_keys(
    case: tuple[Image, Image, CopyConfig, str],
) -> None:
    src, target, copy, members = case
    desired = desired_target(
        src,
        job="job",
        source_region="KR1",
        copy=copy,
        source_members=members.split(",") if members else (),
    )
    ops = build_patch(target, desired, copy)

    for op in ops:
        key = _decode(op["path"])
        assert not is_reserved_key(key), op
        assert key not in CORE_KEYS or key in PATCHABLE_CORE, op
        # An excluded property is the target's own, unless the job sets it (markers, os_type).
        assert not (copy.excluded(key) and key not in desired.properties), op
        assert op["op"] in ("add", "remove"), op  # replace would 409 on a key gone meanwhile
        if op["op"] == "add":
            assert isinstance(op["value"], str | int), op
    patched_raw = apply_patch(target.raw, ops)
    patched = Image.from_api(patched_raw)

    # Every reserved key is exactly as it was.
    for key in set(target.raw) | set(patched_raw):
        if is_reserved_key(key) or key in READ_ONLY_KEYS:
            assert patched_raw.get(key) == target.raw.get(key), key
    # The desired metadata, in one step.
    assert patched.name == desired.create_fields["name"]
    assert (patched.min_disk, patched.min_ram) == (
        desired.create_fields["min_disk"],
        desired.create_fields["min_ram"],
    )
    assert patched.visibility == desired.visibility
    have = {k: property_string(v) for k, v in patched.properties.items()}
    for key, value in desired.properties.items():
        assert have.get(key) == value, key
    if copy.properties:
        leftover = {k for k in have if k not in desired.properties and not copy.excluded(k)}
        assert not leftover, leftover
    else:
        # Without property copying, what the target had stays unless the job sets it.
        for key, value in target.properties.items():
            if key not in desired.properties:
                assert patched.properties.get(key) == value, key
    # Excluded properties are the target's own: untouched.
    for key, value in target.properties.items():
        if copy.excluded(key) and key not in desired.properties:
            assert patched.properties.get(key) == value, key
    assert build_patch(patched, desired, copy) == []
    reasons = metadata_differences(patched, desired, copy)
    assert not [r for r in reasons if not r.startswith(("tag ", "protected "))], reasons


def test_the_toml_writer_round_trips_the_awkward_values() -> None:
    document = {
        'q"uote\\': ["\x00\x1f\x7f", "é\u2028", float("inf"), -0.0, 2**63 - 1],
        "t": {"": dt.datetime(1, 1, 1, 0, 0, 0, 1), "d": dt.date(2024, 2, 29)},
        "time": dt.time(23, 59, 59),
    }
    assert _same(tomllib.loads(dumps(document)), document)
