"""The demo corpus: deterministic, and labelled differently per customer."""

from __future__ import annotations

import random
from collections import Counter

from retrain.demo.corpus import LABELS, TOPICS, customer_profiles, generate_examples


def test_generation_is_deterministic_and_labels_are_allowed() -> None:
    profile = customer_profiles(3)[2]
    first = list(generate_examples(profile, 50, seed=1))
    assert first == list(generate_examples(profile, 50, seed=1))
    assert first != list(generate_examples(profile, 50, seed=2))
    assert {e.label for e in first} <= set(LABELS)
    assert all(e.text.strip() for e in first)


def test_customers_disagree_on_what_is_urgent() -> None:
    """A shared model cannot fit every customer: the same topic is urgent for some, routine for others."""
    profiles = customer_profiles(8)
    disputed = [t for t in TOPICS if 0 < sum(t in p.urgent_topics for p in profiles) < len(profiles)]
    assert len(disputed) >= 5
    vocabularies = {p.vocabulary["product"] for p in profiles}
    assert len(vocabularies) == 8


def test_label_rates_follow_each_customers_policy() -> None:
    for profile in customer_profiles(4):
        rng = random.Random(0)
        labels = Counter(profile.sample(rng).label for _ in range(2000))
        expected = len(profile.urgent_topics) / len(TOPICS)
        assert abs(labels["urgent"] / 2000 - expected) < 0.06


def test_more_customers_than_named_profiles_get_generated_ids() -> None:
    profiles = customer_profiles(12)
    assert [p.customer_id for p in profiles[8:]] == [f"customer_{i:04d}" for i in range(8, 12)]
    assert len({p.customer_id for p in profiles}) == 12
