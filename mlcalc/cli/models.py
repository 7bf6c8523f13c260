"""``mlcalc models list | info NAME | download NAME``: the pretrained-model registry."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlcalc.pretrained import PretrainedModel


def register(commands: Any) -> None:
    parser = commands.add_parser("models", help="list, describe and download pretrained models")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="table of the registry's models")
    listing.add_argument("--json", action="store_true", help="print a JSON list of the entries")
    listing.set_defaults(handler=hub_errors(run_list))

    info = actions.add_parser("info", help="a model's registry entry and model card")
    info.add_argument("name", help="registry name (see 'mlcalc models list')")
    info.add_argument("--json", action="store_true", help="print the entry as JSON")
    info.set_defaults(handler=hub_errors(run_info))

    download = actions.add_parser(
        "download", help="fetch a Hub model into the Hugging Face cache, verify it, print its path"
    )
    download.add_argument("name", help="registry name, or hf://<org>/<repo>/<file>@<revision>")
    download.set_defaults(handler=hub_errors(run_download))


def hub_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """``handler``, with file, network and Hub failures (``OSError``) reported as exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except OSError as error:
            print(f"mlcalc models {args.action}: error: {error}", file=sys.stderr)
            return 2

    return run


#: Width of ``mlcalc models list``'s table, characters.
TABLE_WIDTH = 100
#: Columns of the table: header and whether it is right-aligned (numbers).
COLUMNS = (
    ("name", False),
    ("architecture", False),
    ("elements", False),
    ("data set", False),
    ("F RMSE (meV/Å)", True),
    ("E RMSE (meV/atom)", True),
)


def run_list(args: argparse.Namespace) -> int:
    from mlcalc.pretrained import list_pretrained, registry_index

    models = list_pretrained()
    if args.json:
        print(json.dumps([model.to_dict() for model in models], indent=2))
        return 0
    if not models:
        print(f"no pretrained models in the registry {registry_index()}")
        return 0
    for line in table([list_row(model) for model in models]):
        print(line)
    print("\ndetails, test errors and model card: mlcalc models info NAME")
    return 0


def list_row(model: PretrainedModel) -> list[str]:
    """One row of ``mlcalc models list``: the short data-set name is the part before ``(``."""
    errors = model.test_errors
    return [
        model.name,
        model.architecture + (" (direct)" if model.force_mode == "direct" else ""),
        ",".join(model.elements) if len(model.elements) <= 6 else f"{len(model.elements)} elements",
        model.dataset.name.split(" (")[0],
        _number(errors.get("force_rmse_meV_per_A"), 1),
        _number(errors.get("energy_rmse_meV_per_atom"), 2),
    ]


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: list[list[str]], width: int = TABLE_WIDTH) -> list[str]:
    """Header and ``rows`` as lines of aligned :data:`COLUMNS`, two spaces apart, at most
    ``width`` characters: the data-set column is cut (with ``…``) to fit."""
    header = [name for name, _ in COLUMNS]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(COLUMNS))]
    dataset = 3
    widths[dataset] = max(8, min(widths[dataset], width - sum(widths) + widths[dataset] - 10))
    lines = []
    for row in (header, *rows):
        cells = []
        for (_, right), cell, size in zip(COLUMNS, row, widths, strict=True):
            cell = cell if len(cell) <= size else cell[: size - 1] + "…"
            cells.append(cell.rjust(size) if right else cell.ljust(size))
        lines.append("  ".join(cells).rstrip())
    return lines


def run_info(args: argparse.Namespace) -> int:
    from mlcalc.pretrained import get_pretrained

    model = get_pretrained(args.name)
    entry = model.to_dict()
    if args.json:
        print(json.dumps(entry, indent=2))
        return 0
    rows: list[tuple[str, Any]] = []
    for key, value in entry.items():
        if isinstance(value, dict):
            rows.append((f"{key}:", "" if value else "-"))
            rows.extend((f"  {inner}", item) for inner, item in value.items())
        else:
            rows.append((key, ", ".join(value) if isinstance(value, list) else value))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}".rstrip())
    print()
    print(model.card_text())
    return 0


def run_download(args: argparse.Namespace) -> int:
    from mlcalc.pretrained import HF_PREFIX, download, get_pretrained

    if args.name.startswith(HF_PREFIX):
        note = "in the Hugging Face cache (its digest is checked when it is loaded)"
    elif get_pretrained(args.name).hub is None:
        note = "bundled with mlcalc, nothing to download; sha256 verified"
    else:
        note = "in the Hugging Face cache; sha256 verified"
    path = download(args.name)
    print(f"{args.name}: {note}", file=sys.stderr)
    print(path)
    return 0
