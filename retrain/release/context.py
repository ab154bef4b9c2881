"""The serving image's build context: exactly one release's adapters and its manifest.

Build with BuildKit's named context (the Dockerfile's ``serving`` target copies from it)::

    retrain release context --release MD5 --out build/release
    docker build --target serving --build-arg RELEASE_ID=MD5 \\
        --build-context release=build/release -t retrain-serving:MD5 .
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from retrain.outputs import RELEASE_CONTEXT, replacing
from retrain.release.manifest import AdapterEntry, Manifest
from retrain.release.store import MANIFEST_FILE, ReleaseStore

log = logging.getLogger(__name__)

RELEASE_ID_FILE = "RELEASE_ID"
ADAPTER_SUBDIR = "adapters/{customer}/artifacts/adapter"  # a customer's PEFT adapter files


def write_context(
    store: ReleaseStore,
    release_id: str,
    out_dir: str | Path,
    *,
    reuse_from: Path | None = None,
    force: bool = False,
) -> Path:
    """Write ``manifest.json``, ``RELEASE_ID`` and ``adapters/<customer>/`` (logged models) into ``out_dir``.

    The folder is built beside ``out_dir`` and moved into place at the end: a failed download
    leaves no half-written context behind. ``out_dir`` must be new, empty or an earlier release
    context (replaced only with ``force``); see :mod:`retrain.outputs`. ``reuse_from`` is a folder
    of other complete release contexts (a scoring cache): an adapter version already there is
    hard-linked, not downloaded again, so a release changing one customer of 1,000 downloads one
    adapter.
    """
    with replacing(out_dir, RELEASE_CONTEXT, force=force) as staging:
        _fill(store, release_id, staging, reuse_from)
    return Path(out_dir)


def _fill(store: ReleaseStore, release_id: str, staging: Path, reuse_from: Path | None) -> None:
    """Download (or link from ``reuse_from``) the release's adapters, manifest and id into ``staging``."""
    from mlflow.artifacts import download_artifacts

    manifest: Manifest = store.manifest(release_id)  # checked: it hashes to release_id
    local_copies = _local_copies(reuse_from) if reuse_from is not None else {}
    store.verify_artifacts([a for a in manifest.adapters if _key(a) not in local_copies])
    (staging / "adapters").mkdir()
    downloaded = 0
    for entry in manifest.adapters:
        target = staging / "adapters" / entry.customer
        if _key(entry) in local_copies:
            shutil.copytree(local_copies[_key(entry)], target, copy_function=os.link)
            continue
        downloads = staging / "downloads" / entry.customer
        downloads.mkdir(parents=True)
        local = download_artifacts(artifact_uri=entry.artifact_uri, dst_path=str(downloads))
        entry.check_files(Path(local))  # the bytes released, not truncated or altered since
        Path(local).rename(target)
        downloaded += 1
    shutil.rmtree(staging / "downloads", ignore_errors=True)
    log.info(
        "release %s: %d adapters downloaded, %d reused from %s",
        release_id,
        downloaded,
        len(manifest.adapters) - downloaded,
        reuse_from,
    )
    (staging / MANIFEST_FILE).write_text(manifest.canonical_json())
    (staging / RELEASE_ID_FILE).write_text(release_id + "\n")


def _key(entry: AdapterEntry) -> tuple[str, str, str]:
    return (entry.model_name, entry.version, entry.artifact_uri)


def _local_copies(folder: Path) -> dict[tuple[str, str, str], Path]:
    """Adapter version -> its folder in a complete release context under ``folder``."""
    copies: dict[tuple[str, str, str], Path] = {}
    for marker in folder.glob(f"*/{RELEASE_ID_FILE}"):
        context = marker.parent
        if marker.read_text().strip() != context.name or not (context / MANIFEST_FILE).is_file():
            continue  # not a complete context
        for entry in Manifest.from_json((context / MANIFEST_FILE).read_text()).adapters:
            copies.setdefault(_key(entry), context / "adapters" / entry.customer)
    return copies
