"""The config a command reads when none is given, in the clone and in an installed package.

In the clone it is configs/mnist.yaml (:data:`~tuning.config.schema.SHIPPED_CONFIG`), whose relative paths reach
the vendored model and MNIST files, so nothing is downloaded. An installed package has no clone beside it: the
wheel carries the same config and the two zoo models as package data under ``tuning/shipped/`` (links to the
clone's files in the source tree, copied into the wheel), laid out like the clone, so the config's
``../models/...`` paths reach the packaged models. Two of its paths would point into the installed package,
which is no place for data or outputs; :func:`installed_overrides` moves them: ``dataset.root`` to null (the
user cache, downloaded on first use, tuning/data/download.py) and ``output.model`` into the current folder.
Anything the user gives (``--set``, flags) still wins.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from tuning.config.loading import load_config
from tuning.config.schema import SHIPPED_CONFIG

PACKAGED_CONFIG = ("shipped", "configs", "mnist.yaml")  # inside the package tuning, like configs/mnist.yaml


def packaged_config() -> Path | None:
    """The package's copy of the shipped config; None when the package is not on disk (a zip import)."""
    entry = resources.files("tuning").joinpath(*PACKAGED_CONFIG)
    return entry if isinstance(entry, Path) and entry.is_file() else None


def default_config() -> Path | None:
    """``--config``'s default: the clone's configs/mnist.yaml, else the package's copy, else None (the schema's
    defaults)."""
    return SHIPPED_CONFIG if SHIPPED_CONFIG.is_file() else packaged_config()


def installed_overrides(config: Path | None) -> dict[str, Any]:
    """For the package's own config: ``dataset.root`` null and ``output.model`` in the current folder.

    Empty for any other config (the clone's, a user's), whose paths are the user's to choose.
    """
    packaged = packaged_config()
    # Compared unresolved: in the clone the package's copy is a link to configs/mnist.yaml, which keeps its paths.
    if config is None or packaged is None or os.path.abspath(config) != os.path.abspath(packaged):
        return {}
    overrides: dict[str, Any] = {"dataset.root": None}
    configured = load_config(config).output.model
    if configured is not None:
        overrides["output.model"] = configured.name
    return overrides
