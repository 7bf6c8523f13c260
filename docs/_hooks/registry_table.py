"""MkDocs hook: the pretrained-model pages come from the registry, not from copies of it.

* ``<!-- registry-table -->`` in a page becomes a table of every model in
  ``registry/index.json`` (name linked to its card page, architecture, elements, data set,
  test errors);
* every model of the index must have its card page ``docs/models/<name>.md`` (which includes
  ``registry/cards/<name>.md`` with the include-markdown plugin), or the build fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

MARKER = "<!-- registry-table -->"


def _models(config: Any) -> list[dict[str, Any]]:
    index = Path(config["config_file_path"]).parent / "registry" / "index.json"
    return json.loads(index.read_text(encoding="utf-8"))["models"]


def _error(errors: dict[str, float], key: str) -> str:
    return f"{errors[key]:.1f}" if key in errors else "–"


def _table(models: list[dict[str, Any]], page_dir: Path) -> str:
    rows = [
        "| model | architecture | elements | data set | F RMSE (meV/Å) | E RMSE (meV/atom) |",
        "|---|---|---|---|--:|--:|",
    ]
    for model in models:
        card = Path("models", f"{model['name']}.md")
        link = Path(*[".."] * len(page_dir.parts), card).as_posix()
        architecture = {"nemp": "NEMP", "mlanet": "MLANet"}[model["architecture"]]
        if model["force_mode"] == "direct":
            architecture += " (direct forces)"
        dataset = model["dataset"]["name"].split(" (", 1)[0]
        errors = model["test_errors"]
        rows.append(
            f"| [`{model['name']}`]({link}) | {architecture} | {', '.join(model['elements'])} "
            f"| {dataset} | {_error(errors, 'force_rmse_meV_per_A')} "
            f"| {_error(errors, 'energy_rmse_meV_per_atom')} |"
        )
    return "\n".join(rows)


def on_files(files: Any, config: Any) -> Any:
    missing = [
        m["name"]
        for m in _models(config)
        if files.get_file_from_path(f"models/{m['name']}.md") is None
    ]
    if missing:
        raise PluginError(
            f"registry models without a card page: {', '.join(missing)}; add "
            "docs/models/NAME.md (one include-markdown line, as the others) and list it in "
            "the nav of mkdocs.yml"
        )
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    page_dir = Path(page.file.src_uri).parent
    return markdown.replace(MARKER, _table(_models(config), page_dir))
