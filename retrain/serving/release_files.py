"""Before a release is served: its adapters' files on disk are the ones its manifest recorded.

``retrain release context`` checks what it downloads, but a release folder can change after that
(a damaged volume, a hand edit). The server reads adapters lazily, so without this check an altered
adapter would be served under the release's id, and a missing file would fail only the first
request that needs it.
"""

from __future__ import annotations

from pathlib import Path

from retrain.adapters.model import LABELS_FILE
from retrain.engine.weights import CONFIG_FILE, WEIGHTS_FILE
from retrain.errors import InputError
from retrain.release.context import ADAPTER_SUBDIR
from retrain.release.manifest import AdapterFilesError, InvalidManifestError, Manifest
from retrain.release.store import MANIFEST_FILE

ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE, LABELS_FILE)  # what the engine reads of each adapter


def check_release_files(release_dir: str | Path) -> Manifest:
    """The release folder's manifest, once every adapter's files match its SHA-256 digests and are all there.

    Raises :class:`AdapterFilesError` naming the customer, version and file, or :class:`InputError`
    when the folder holds no readable manifest.
    """
    root = Path(release_dir)
    try:
        manifest = Manifest.from_json((root / MANIFEST_FILE).read_text())
    except (OSError, UnicodeDecodeError, InvalidManifestError) as error:
        raise InputError(f"{root} is not a release folder: {root / MANIFEST_FILE}: {error}") from None
    for entry in manifest.adapters:
        logged_model = root / "adapters" / entry.customer
        entry.check_files(logged_model)
        adapter = root / ADAPTER_SUBDIR.format(customer=entry.customer)
        missing = next((name for name in ADAPTER_FILES if not (adapter / name).is_file()), None)
        if missing is not None:  # a manifest from before digests names no file: the engine's are needed
            raise AdapterFilesError(
                f"adapter of customer {entry.customer} ({entry.model_name} v{entry.version}): "
                f"{adapter.relative_to(logged_model)}/{missing} is missing"
            )
    return manifest
