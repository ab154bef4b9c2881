"""Synthetic doltlite training repositories for the benchmarks (shared by every bench script)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: Dolt is not on a GPU box, which runs the engine bench
    from retrain.dolt import DoltRepository

CUSTOMERS = 1000
CHANGED_CUSTOMERS = ("customer_0007", "customer_0421", "customer_0999")


def build_repo(path: Path, rows: int) -> tuple[DoltRepository, str, str]:
    """A repo with ``rows`` examples; a second commit edits 100 rows of 3 customers."""
    from retrain.dolt import DoltRepository
    from retrain.dolt.dialects import Statement

    repo = DoltRepository.open(str(path), create=True)
    repo.execute(
        Statement(
            "CREATE TABLE examples (example_id INTEGER PRIMARY KEY, customer_id TEXT NOT NULL, "
            "text TEXT NOT NULL, label TEXT NOT NULL)"
        )
    )
    started = time.perf_counter()
    batch = 200_000
    for start in range(0, rows, batch):
        repo.insert_rows(
            "examples",
            ("example_id", "customer_id", "text", "label"),
            [
                (
                    i,
                    f"customer_{i % CUSTOMERS:04d}",
                    f"support request number {i}",
                    ("routine", "urgent")[(i // CUSTOMERS) % 2],
                )
                for i in range(start, min(rows, start + batch))
            ],
        )
    before = repo.commit(f"{rows} examples")
    elapsed = time.perf_counter() - started
    print(f"  built {rows:,} rows in {elapsed:.1f}s ({rows / elapsed:,.0f} rows/s)")
    ids = [i for i in range(rows) if f"customer_{i % CUSTOMERS:04d}" in CHANGED_CUSTOMERS][:100]
    repo.execute(
        Statement(
            f"UPDATE examples SET label = 'urgent', text = text || ' (edited)' "  # noqa: S608
            f"WHERE example_id IN ({', '.join('?' * len(ids))})",
            tuple(ids),
        )
    )
    after = repo.commit("edit 100 rows of 3 customers")
    return repo, before, after


def synthetic_release(root: Path, customers: int, *, seed: int = 0) -> Path:
    """A release context of ``customers`` adapters, written the way ``retrain release context`` writes one.

    One adapter is really trained (on the demo corpus); the others are copies whose LoRA factors and
    head are perturbed with seeded noise, so every customer scores differently at the same cost.
    """
    import shutil

    import pandas as pd
    import torch
    from safetensors.torch import load_file, save_file

    from retrain.adapters.model import default_base_model
    from retrain.adapters.training import TrainingParams, train_adapter
    from retrain.demo.corpus import customer_profiles, generate_examples
    from retrain.release.context import ADAPTER_SUBDIR, RELEASE_ID_FILE
    from retrain.release.manifest import AdapterEntry, Manifest
    from retrain.release.store import MANIFEST_FILE

    trained = root / "trained-adapter"
    if not trained.is_dir():
        profile = customer_profiles(1)[0]
        examples = list(generate_examples(profile, 200, seed=7))
        rows = pd.DataFrame(
            {
                "example_id": range(len(examples)),
                "text": [e.text for e in examples],
                "label": [e.label for e in examples],
            }
        )
        train_adapter(
            rows,
            customer=profile.customer_id,
            commit="bench",
            base_model=default_base_model(),
            params=TrainingParams(epochs=2),
            out_dir=trained,
        )
    tensors = load_file(str(trained / "adapter_model.safetensors"))
    release = root / f"release-{customers}"
    if (release / RELEASE_ID_FILE).is_file():  # written last: the release is complete
        return release
    shutil.rmtree(release, ignore_errors=True)
    generator = torch.Generator().manual_seed(seed)
    entries = []
    for index in range(customers):
        customer = synthetic_customer(index)
        adapter_dir = release / ADAPTER_SUBDIR.format(customer=customer)
        shutil.copytree(trained, adapter_dir)
        noisy = {
            k: t + 0.02 * t.abs().mean() * torch.randn(t.shape, generator=generator)
            for k, t in tensors.items()
        }
        save_file(noisy, str(adapter_dir / "adapter_model.safetensors"))
        entries.append(
            AdapterEntry(customer, f"adapter-{customer}", "1", f"run{index}", "bench", str(adapter_dir))
        )
    manifest = Manifest(tuple(entries))
    (release / MANIFEST_FILE).write_text(manifest.canonical_json())
    (release / RELEASE_ID_FILE).write_text(manifest.release_id + "\n")
    return release


def synthetic_customer(index: int) -> str:
    return f"customer_{index:04d}"
