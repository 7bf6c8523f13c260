"""Data package: the pretrained-model index, model cards and bundled checkpoints.

Installed as ``mlcalc._registry`` (see ``pyproject.toml``); read through
:mod:`mlcalc.pretrained`. The schema is in ``README.md`` next to this file.
"""
