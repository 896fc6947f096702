"""A dataset's IDX archives downloaded into the user cache, for ``dataset.root: null``.

That is an installed copy's default outside the clone (tuning/config/shipped.py); a configured folder
(``dataset.root``, ``--dataset-location``) is only ever read. The cache is
``$XDG_CACHE_HOME/mnist-int8-tuning/datasets/<name>/raw/`` (``~/.cache`` when ``XDG_CACHE_HOME`` is unset or
not absolute, as the XDG base directory specification says), torchvision's layout. An archive is downloaded
only when a split needs it and no copy of it (gzipped or extracted) is there, from ``dataset.download_url``
or else the https mirror torchvision's dataset class lists. Each download goes through tuning/files/fetch.py:
https only (http to localhost), at most :data:`~tuning.data.idx.MAX_ARCHIVE_BYTES` bytes, within
``dataset.download_timeout_s``, renamed into place only once its md5 is torchvision's, so an interrupted
or wrong download leaves nothing. The content is then checked like any dataset file's (tuning/data/idx.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tuning.config.schema import DatasetSection
from tuning.data import idx
from tuning.errors import FetchError
from tuning.files.fetch import Keys, download

CACHE_NAME = "mnist-int8-tuning"
_KEYS = Keys(
    max_bytes="the archive size limit",
    deadline="dataset.download_timeout_s",
    wrong_hash_hint="check dataset.download_url: it must serve torchvision's original archives",
)


def cache_root() -> Path:
    """The ``dataset.root`` that null stands for: the project's folder of the user cache."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return cache / CACHE_NAME / "datasets"


def cache_folder(name: str) -> Path:
    """Where the cache keeps dataset ``name``'s archives: ``<cache_root>/<name>/raw``."""
    return cache_root() / name / "raw"


def ensure_archive(dataset: DatasetSection, spec: idx.IdxFile, mirrors: list[str], files: list[str]) -> None:
    """Download ``spec``'s archive into the cache unless a copy of it is there already.

    ``mirrors`` are the dataset class's download addresses, ``files`` the names of all its archives (for the
    manual steps an error line gives).
    """
    folder = cache_folder(dataset.name)
    archive = folder / f"{spec.name}.gz"
    if archive.exists() or (folder / spec.name).exists():
        return  # read and verified like any dataset file
    base = dataset.download_url or next((url for url in mirrors if url.lower().startswith("https://")), None)
    if base is None:
        raise FetchError(
            f"{archive}: not in the cache, and torchvision lists no https address for {dataset.name} "
            f"({', '.join(mirrors) or 'none'}); {manual_steps(dataset.name, files, None)}"
        )
    if spec.archive_md5 is None:
        raise FetchError(f"{archive}: not in the cache, and no checksum is known to verify a download of it")
    url = f"{base.rstrip('/')}/{archive.name}"
    print(f"downloading {url} into {folder}/ (once; later runs read the cache)", file=sys.stderr)
    try:
        download(
            url,
            archive,
            spec.archive_md5,
            algorithm="md5",
            max_bytes=idx.MAX_ARCHIVE_BYTES,
            deadline_s=dataset.download_timeout_s,
            keys=_KEYS,
        )
    except FetchError as exc:
        raise FetchError(f"{exc}; {manual_steps(dataset.name, files, base)}") from None


def manual_steps(name: str, files: list[str], base: str | None) -> str:
    """What to do instead of the download, as the tail of one error line."""
    source = f" from {base.rstrip('/')}/" if base else ""
    return (
        f"offline? download {', '.join(files)}{source} into {cache_folder(name)}/ yourself, "
        f"or pass --dataset-location FOLDER (dataset.root) holding {name}/raw/ with them"
    )
