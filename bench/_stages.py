"""Resumable benchmark stages: each stage's result is kept in a JSON file once done."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlcalc.atomic import write_text_atomic


def run_stage(results: dict[str, Any], path: Path, name: str, work: Callable[[], Any]) -> None:
    """``results[name] = work()`` unless already there; saved after each stage."""
    if name in results:
        return
    print(f"--- {name}", flush=True)
    results[name] = work()
    write_text_atomic(path, json.dumps(results, indent=1))
