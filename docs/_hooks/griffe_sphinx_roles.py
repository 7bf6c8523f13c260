"""Griffe extension for the API reference: mlcalc's docstrings in Markdown.

The docstrings are Google style with two habits from Sphinx that Markdown does not know:

* roles such as :class:`~mlcalc.graph.AtomicGraph` or :meth:`forward`: each becomes a
  cross-reference to the object, resolved in the scope of the docstring that names it (as
  Sphinx does); it is marked optional, so a name outside mlcalc (``ase.Atoms``) is shown as
  code without a link instead of failing the strict build;
* doctest lines (``>>> ...``) in the running text, which Markdown would read as nested block
  quotes: each run of them becomes a ``pycon`` code block;
* a first sentence that runs over several lines: mkdocstrings takes the first line as the
  summary in its tables of members, so the lines of the first paragraph are joined;
* one entry for several arguments (``start, stop, step: frame selection``), which Google
  style (and griffe) does not know: it becomes one entry per argument, with the same text.

Listed under ``extensions`` of the Python handler in ``mkdocs.yml``; changes nothing in mlcalc.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(~?)([\w.]+)(\(\))?`")
DOCTEST = re.compile(r"^(?P<indent>[ \t]*)(>>>|\.\.\.)( |$)")
SECTION = re.compile(r"^(?P<indent>[ \t]*)(Args|Arguments|Parameters|Attributes):$")
SHARED_ENTRY = re.compile(r"^(?P<indent>[ \t]+)(?P<names>\w+(?:, \w+)+): (?P<text>.*)$")


def _target(obj: griffe.Object, name: str) -> str:
    """The full path of ``name`` as seen from ``obj``'s docstring (``name`` when unknown)."""
    if name.startswith("mlcalc."):
        return name
    head, _, rest = name.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:
        try:
            resolved = scope.resolve(head)
        except griffe.NameResolutionError:
            scope = scope.parent
            continue
        return f"{resolved}.{rest}" if rest else resolved
    return name


def _role(obj: griffe.Object, match: re.Match[str]) -> str:
    short, name, call = match.group(1) == "~", match.group(2), match.group(3) or ""
    title = html.escape((name.rsplit(".", 1)[-1] if short else name) + call)
    return (
        f'<autoref identifier="{html.escape(_target(obj, name))}" optional>'
        f"<code>{title}</code></autoref>"
    )


def _fence_doctests(text: str) -> str:
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        match = DOCTEST.match(lines[i])
        if match is None or not lines[i].lstrip().startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        indent = match.group("indent")
        out.extend(["", f"{indent}```pycon"])
        while i < len(lines) and DOCTEST.match(lines[i]):
            out.append(lines[i])
            i += 1
        out.extend([f"{indent}```", ""])
    return "\n".join(out)


def _split_shared_entries(text: str) -> str:
    lines, out, in_arguments, i = text.splitlines(), [], False, 0
    while i < len(lines):
        line = lines[i]
        if SECTION.match(line):
            in_arguments = True
        elif line.strip() and not line[:1].isspace():
            in_arguments = False
        match = SHARED_ENTRY.match(line) if in_arguments else None
        if match is None:
            out.append(line)
            i += 1
            continue
        indent = match.group("indent")
        body = [match.group("text")]
        i += 1
        while i < len(lines) and lines[i].startswith(indent + " "):
            body.append(lines[i])
            i += 1
        for name in match.group("names").split(", "):
            out.append(f"{indent}{name}: {body[0]}")
            out.extend(body[1:])
    return "\n".join(out)


def _join_summary(text: str) -> str:
    head, blank, rest = text.partition("\n\n")
    lines = head.splitlines()
    if len(lines) < 2 or any(
        line[:1].isspace() or line.startswith(("```", "* ", "- ", ">>>")) for line in lines
    ):
        return text
    return " ".join(line.strip() for line in lines) + blank + rest


class SphinxRoles(griffe.Extension):
    """Rewrite every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._walk(pkg, seen=set())

    def _walk(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            text = _join_summary(_split_shared_entries(_fence_doctests(obj.docstring.value)))
            obj.docstring.value = ROLE.sub(lambda match: _role(obj, match), text)
        for member in obj.members.values():
            if not member.is_alias:
                self._walk(member, seen)
