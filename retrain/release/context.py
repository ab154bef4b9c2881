"""The serving image's build context: exactly one release's adapters and its manifest.

Build with BuildKit's named context (the Dockerfile's ``serving`` target copies from it)::

    retrain release context --release MD5 --out build/release
    docker build --target serving --build-arg RELEASE_ID=MD5 \\
        --build-context release=build/release -t retrain-serving:MD5 .
"""

from __future__ import annotations

import shutil
from pathlib import Path

from retrain.release.manifest import Manifest
from retrain.release.store import MANIFEST_FILE, ReleaseError, ReleaseStore

RELEASE_ID_FILE = "RELEASE_ID"
ADAPTER_SUBDIR = "adapters/{customer}/artifacts/adapter"  # a customer's PEFT adapter files


def write_context(store: ReleaseStore, release_id: str, out_dir: str | Path) -> Path:
    """Write ``manifest.json``, ``RELEASE_ID`` and ``adapters/<customer>/`` (logged models) into ``out_dir``.

    The folder is built beside ``out_dir`` and moved into place at the end: a failed download
    leaves no half-written context behind.
    """
    from mlflow.artifacts import download_artifacts

    manifest: Manifest = store.manifest(release_id)
    if manifest.release_id != release_id:
        raise ReleaseError(
            f"release {release_id}'s stored manifest hashes to {manifest.release_id}: corrupted"
        )
    store.verify_artifacts(manifest.adapters)
    out_dir = Path(out_dir)
    staging = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "adapters").mkdir(parents=True)
    for entry in manifest.adapters:
        downloads = staging / "downloads" / entry.customer
        downloads.mkdir(parents=True)
        local = download_artifacts(artifact_uri=entry.artifact_uri, dst_path=str(downloads))
        Path(local).rename(staging / "adapters" / entry.customer)
    shutil.rmtree(staging / "downloads")
    (staging / MANIFEST_FILE).write_text(manifest.canonical_json())
    (staging / RELEASE_ID_FILE).write_text(release_id + "\n")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    return out_dir
