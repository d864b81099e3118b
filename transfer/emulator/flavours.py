"""The two kinds of cloud the emulator can be: ``nhn``, following NHN Cloud's Image API guide
(the seed), and ``glance``, following upstream OpenStack Glance 33.  A ``Flavour`` holds every
rule in which they differ; the region service and the modules that apply rules read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Flavour:
    """The rules of one kind of cloud (every field is one difference between the two)."""

    name: str
    #: Create refuses an image without ``os_type``.
    os_type_required: bool
    #: The values ``os_type`` may take (empty: any string, as any custom property).
    os_types: tuple[str, ...]
    #: Tags may start with ``_``.
    underscore_tags: bool
    #: The visibility of an image created without one.
    default_visibility: str
    #: The visibilities a project member may set (others: 403, unknown ones: 400).
    user_visibilities: frozenset[str]
    #: ``protected=true`` blocks changes (PATCH, tags) as well as deletion.
    protected_blocks_changes: bool
    #: Only images whose ``nhncloud_allow_download`` is "true" (or unset) may be downloaded.
    download_rule: bool
    #: Create refuses an image without a ``name``.
    name_required: bool
    #: ``POST /v2/images/{id}/actions/deactivate`` and ``/reactivate`` exist.
    image_actions: bool
    #: The ``visibility`` enum of the image schema.
    schema_visibilities: tuple[str, ...]
    #: Extra properties of the image schema: name -> enum values (empty: any string).
    schema_extras: tuple[tuple[str, tuple[str, ...]], ...]
    #: The identity versions served when the caller names none.
    identity_versions: tuple[str, ...]


NHN = Flavour(
    name="nhn",
    os_type_required=True,
    os_types=("linux", "windows"),
    underscore_tags=False,
    default_visibility="private",
    user_visibilities=frozenset({"private", "shared"}),
    protected_blocks_changes=True,
    download_rule=True,
    name_required=True,
    image_actions=False,
    schema_visibilities=("public", "private", "shared"),
    schema_extras=(
        ("os_type", ("windows", "linux")),
        ("os_distro", ()),
        ("os_version", ()),
        ("os_architecture", ()),
        ("hypervisor_type", ()),
        ("login_username", ()),
        ("description", ()),
        ("nhncloud_product", ("compute", "gpu")),
        ("nhncloud_allow_download", ("true", "false")),
    ),
    identity_versions=("v2.0",),
)

GLANCE = Flavour(
    name="glance",
    os_type_required=False,
    os_types=(),
    underscore_tags=True,
    default_visibility="shared",
    user_visibilities=frozenset({"private", "shared", "community"}),
    protected_blocks_changes=False,
    download_rule=False,
    name_required=False,
    image_actions=True,
    schema_visibilities=("community", "public", "private", "shared"),
    schema_extras=(),
    identity_versions=("v3",),
)

FLAVOURS: dict[str, Flavour] = {flavour.name: flavour for flavour in (NHN, GLANCE)}


def flavour_named(name: str) -> Flavour:
    """The flavour of this name (ValueError naming the choices)."""
    try:
        return FLAVOURS[name]
    except KeyError:
        choices = ", ".join(sorted(FLAVOURS))
        raise ValueError(f"flavour: {name!r} is not a flavour; choose one of {choices}") from None
