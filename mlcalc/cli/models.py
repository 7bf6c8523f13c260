"""``mlcalc models list | info NAME | download NAME``: the pretrained-model registry."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any


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


def run_list(args: argparse.Namespace) -> int:
    from mlcalc.pretrained import list_pretrained, registry_index

    models = list_pretrained()
    if args.json:
        print(json.dumps([model.to_dict() for model in models], indent=2))
        return 0
    if not models:
        print(f"no pretrained models in the registry {registry_index()}")
        return 0
    header = ("name", "architecture", "elements", "dataset", "source", "test errors")
    rows = [
        (
            model.name,
            f"{model.architecture} ({model.force_mode})",
            ",".join(model.elements),
            model.dataset.name,
            model.source,
            ", ".join(f"{key}={value:g}" for key, value in model.test_errors.items()) or "-",
        )
        for model in models
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
    return 0


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
