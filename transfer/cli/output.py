"""Machine output for every list-like command: ``-f table|json|value|csv`` and ``--column``.

A command describes its output as rows (flat records, column name -> value) plus, for ``json``,
a document; this module picks the columns and renders them, as the openstack CLI does:

- ``table``: the command's own human text (a generic table when ``--column`` is given);
- ``value``: the values of each row separated by spaces, no header (one value per line for a
  single record, as ``openstack ... show -f value`` prints);
- ``csv``: a header and one quoted row per record (the ``csv`` module: a name with a comma or a
  quote reads back intact);
- ``json``: one JSON document whose top level carries ``schema_version`` (``docs/json-output.md``).

Column names are the JSON key names (``source_id``, ``target``, ...), matched without regard to
case; an unknown one is a usage error that names the known ones.

``-c`` is both the openstack CLI's column option and our ``-c/--config FILE``
(``ConfigOrColumn``): ``-c VALUE`` picks a column when VALUE is one of the command's columns,
and names the config file otherwise (a config file named like a column is ``--config NAME``
or ``./NAME``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from transfer.errors import ConfigError

__all__ = [
    "SCHEMA_VERSION",
    "ConfigOrColumn",
    "Format",
    "add_output_options",
    "check_columns",
    "chosen_columns",
    "chosen_format",
    "print_document",
    "print_record",
    "print_rows",
    "select",
]

#: The version of every JSON document the commands print (bumped when a field changes meaning
#: or goes away; new fields do not bump it).
SCHEMA_VERSION = 1


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"
    VALUE = "value"
    CSV = "csv"


#: What a single record (``images show``) can be printed as: csv is for lists.
RECORD_FORMATS = (Format.TABLE, Format.JSON, Format.VALUE)


def _column_type(known: Sequence[str]) -> Callable[[str], str]:
    by_lower = {name.lower(): name for name in known}

    def column(text: str) -> str:
        try:
            return by_lower[text.lower()]
        except KeyError:
            raise argparse.ArgumentTypeError(
                f"unknown column {text!r}; known columns: {', '.join(known)}"
            ) from None

    return column


#: The attribute of a parsed namespace holding the command's columns (for ``-c``).
KNOWN_COLUMNS = "_known_columns"


class ConfigOrColumn(argparse.Action):
    """``-c VALUE``: a column (``-c COLUMN``, as the openstack CLI has it) when VALUE is one of
    the command's columns, else the config file (``-c FILE``); ``--config`` is always the file."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        text = str(values)
        by_lower = {name.lower(): name for name in getattr(namespace, KNOWN_COLUMNS, ())}
        column = by_lower.get(text.lower()) if option_string == "-c" else None
        if column is None:
            setattr(namespace, self.dest, Path(text))
            return
        chosen = list(getattr(namespace, "columns", None) or [])
        namespace.columns = [*chosen, column]


def config_option_help(text: str) -> str:
    """The help of a ``-c/--config`` that also takes the openstack CLI's ``-c COLUMN``."""
    return f"{text} (-c COLUMN, as the openstack CLI has it, shows that column instead)"


def add_output_options(
    parser: argparse.ArgumentParser,
    columns: Sequence[str],
    *,
    json_flag: bool = True,
    formats: Sequence[Format] = tuple(Format),
) -> None:
    """``-f/--format``, ``--column`` (repeatable, order kept) and, where it existed before,
    ``--json`` (a synonym of ``-f json``).  ``-c COLUMN`` is ``ConfigOrColumn``'s."""
    parser.set_defaults(**{KNOWN_COLUMNS: tuple(columns)})
    group = parser.add_argument_group("output")
    group.add_argument(
        "-f",
        "--format",
        dest="format",
        choices=[f.value for f in formats],
        default=None,
        help="output format (default: table, the human text)",
    )
    group.add_argument(
        "--column",
        dest="columns",
        action="append",
        type=_column_type(columns),
        metavar="COLUMN",
        help=f"show only this column (also -c COLUMN); repeatable, in this order "
        f"({', '.join(columns)})",
    )
    if json_flag:
        group.add_argument(
            "--json",
            dest="format",
            action="store_const",
            const=Format.JSON.value,
            help="the same as -f json",
        )


def chosen_format(args: argparse.Namespace) -> Format:
    return Format(getattr(args, "format", None) or Format.TABLE)


def chosen_columns(args: argparse.Namespace) -> list[str] | None:
    columns: list[str] | None = getattr(args, "columns", None)
    return columns or None


def check_columns(args: argparse.Namespace, known: Sequence[str], what: str) -> None:
    """For a command whose columns depend on another flag: the chosen columns must be ``what``'s."""
    unknown = [c for c in chosen_columns(args) or () if c not in known]
    if unknown:
        raise ConfigError(
            f"--column {unknown[0]}: not a column of {what}; known columns: {', '.join(known)}"
        )


def select(row: Mapping[str, Any], columns: Sequence[str] | None) -> dict[str, Any]:
    """The row with only ``columns``, in their order (the whole row when None)."""
    if columns is None:
        return dict(row)
    return {c: row.get(c) for c in columns}


def text(value: Any) -> str:
    """A value as ``value`` and ``csv`` print it: JSON's spellings for booleans and null-free."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(text(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return str(value)


def cell(value: Any) -> str:
    """A value as a table shows it: ``-`` for nothing."""
    if isinstance(value, list | tuple):
        return ", ".join(text(v) for v in value) or "-"
    return text(value) or "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart, no trailing blanks."""
    materialized = [list(r) for r in rows]
    widths = [len(h) for h in headers]
    for row in materialized:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *materialized]
    )


def print_document(document: Mapping[str, Any], stream: IO[str] | None = None) -> None:
    """A JSON document, ``schema_version`` first."""
    data = {"schema_version": SCHEMA_VERSION, **document}
    out = stream or sys.stdout
    out.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def print_rows(
    args: argparse.Namespace,
    rows: Sequence[Mapping[str, Any]],
    *,
    default: Sequence[str],
    human: Callable[[], str],
    document: Callable[[list[str] | None], Mapping[str, Any]],
    stream: IO[str] | None = None,
) -> None:
    """A list-like output in the chosen format.

    ``default`` are the columns ``value``, ``csv`` and a ``--column``-less generic table
    show; ``human`` is the ``table`` text when no column is chosen; ``document(columns)`` is
    the JSON document (its items cut to ``columns`` when some are chosen).
    """
    out = stream or sys.stdout
    fmt = chosen_format(args)
    columns = chosen_columns(args)
    if fmt is Format.JSON:
        print_document(document(columns), out)
        return
    if fmt is Format.TABLE and columns is None:
        printed = human()
        if printed:
            out.write(printed + "\n")
        return
    shown = columns or list(default)
    if fmt is Format.TABLE:
        headers = [c.upper() for c in shown]
        out.write(table(headers, ([cell(r.get(c)) for c in shown] for r in rows)) + "\n")
    elif fmt is Format.VALUE:
        for row in rows:
            out.write(" ".join(text(row.get(c)) for c in shown) + "\n")
    else:
        import csv  # only for -f csv

        writer = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        writer.writerow(shown)
        for row in rows:
            writer.writerow([_csv_value(row.get(c)) for c in shown])


def _csv_value(value: Any) -> Any:
    # Numbers stay unquoted (QUOTE_NONNUMERIC reads them back as numbers); booleans are text.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return text(value)


def print_record(
    args: argparse.Namespace,
    record: Mapping[str, Any],
    *,
    default: Sequence[str],
    human: Callable[[], str],
    document: Callable[[list[str] | None], Mapping[str, Any]],
    stream: IO[str] | None = None,
) -> None:
    """One record (``images show``): ``value`` prints one value per line."""
    out = stream or sys.stdout
    fmt = chosen_format(args)
    columns = chosen_columns(args)
    if fmt is Format.JSON:
        print_document(document(columns), out)
    elif fmt is Format.VALUE:
        for column in columns or default:
            out.write(text(record.get(column)) + "\n")
    elif columns is None:
        out.write(human() + "\n")
    else:
        width = max(len(c) for c in columns)
        for column in columns:
            out.write(f"{column.ljust(width)}  {cell(record.get(column))}".rstrip() + "\n")
