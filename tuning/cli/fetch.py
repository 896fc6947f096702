"""``fetch``: download the configured model unless a verified copy is already there."""

from __future__ import annotations

from pathlib import Path

import click

from tuning.cli.flags import config_option, set_option
from tuning.cli.options import build_config, config_file, console_options, current_console, outputs_guarded


@click.command()
@config_option
@set_option
@console_options
def fetch(config_path: Path | None, assignments: tuple[str, ...]) -> None:
    """Download model.url to model.path unless a copy with model.sha256 is already there."""
    from tuning.files.fetch import ensure_file, sha256_of

    console = current_console()
    config = build_config(config_path, assignments)
    destination = config.path("model.path")
    # A verified copy already there is only read; a missing one is downloaded, so checked and locked first.
    outputs = [] if destination.exists() else [("model.path", destination)]
    with outputs_guarded(outputs, [("the config file", config_file(config_path))]):
        path = ensure_file(
            destination,
            config.model.url,
            config.model.sha256,
            max_bytes=config.model.max_bytes,
            deadline_s=config.model.download_timeout_s,
        )
    verdict = "verified" if config.model.sha256 else "not verified (model.sha256 is not set)"
    console.result(f"{path}: sha256 {sha256_of(path, config.model.max_bytes)} {verdict}")
