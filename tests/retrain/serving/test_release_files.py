"""A release folder is served only as released: its adapters' files match the manifest's SHA-256."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from retrain.release.context import ADAPTER_SUBDIR
from retrain.release.manifest import AdapterFilesError
from retrain.serving.release_files import check_release_files

if TYPE_CHECKING:  # tests/conftest.py is pytest's to import: importing it again would re-run it
    from tests.conftest import TrainedRelease


@pytest.fixture
def release_copy(trained_release: TrainedRelease, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_release.release_dir, tmp_path / "release"))


def test_an_intact_release_passes(trained_release: TrainedRelease, release_copy: Path) -> None:
    assert check_release_files(release_copy).release_id == trained_release.release_id


def test_altered_adapter_bytes_are_refused_naming_customer_and_file(
    trained_release: TrainedRelease, release_copy: Path
) -> None:
    customer = trained_release.customers[1]
    weights = release_copy / ADAPTER_SUBDIR.format(customer=customer) / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte in the tensors: the file still loads, the scores change
    weights.write_bytes(bytes(data))
    with pytest.raises(AdapterFilesError) as raised:
        check_release_files(release_copy)
    message = str(raised.value)
    assert f"adapter of customer {customer} (" in message
    assert "artifacts/adapter/adapter_model.safetensors does not match the SHA-256" in message


def test_a_deleted_adapter_file_is_refused_naming_it(
    trained_release: TrainedRelease, release_copy: Path
) -> None:
    customer = trained_release.customers[0]
    (release_copy / ADAPTER_SUBDIR.format(customer=customer) / "adapter_config.json").unlink()
    with pytest.raises(AdapterFilesError, match=rf"customer {customer} .*adapter_config.json is missing"):
        check_release_files(release_copy)


def test_a_folder_without_manifest_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"is not a release folder: .*manifest.json") as raised:
        check_release_files(tmp_path)
    assert "\n" not in str(raised.value)
