"""Synthetic, labelled customer-support texts with per-customer vocabulary and labelling quirks.

Each customer (a company using the support product) has its own domain words, and its own policy of
which request topics are ``urgent``: a refund is urgent for an airline and routine for a game
studio. The same sentence can therefore carry different labels for different customers, which is
exactly why one adapter per customer beats a single shared model. Everything is deterministic in
the seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

LABELS = ("routine", "urgent")

TOPICS: dict[str, tuple[str, ...]] = {
    "billing": ("I was charged twice for {product}", "the invoice for {product} shows the wrong amount"),
    "login": ("I cannot log in to my {account}", "my {account} password reset link does not work"),
    "delivery": ("my {item} has not arrived yet", "the tracking page for my {item} has not moved"),
    "outage": ("{product} is down for our whole team", "{product} keeps timing out since this morning"),
    "refund": ("I would like a refund for my {item}", "please cancel and refund the {item} I bought"),
    "feature": ("how do I export data from {product}", "is there a dark mode in {product}"),
    "security": ("someone else accessed my {account}", "I got a strange email asking for my {account} pin"),
    "feedback": ("just wanted to say {product} is great", "the new {product} update looks nice"),
}
OPENERS = ("hi,", "hello team,", "good morning,", "hey,", "", "dear support,")
CLOSERS = ("thanks", "please help", "regards", "asap please", "", "cheers")

# (customer name, vocabulary, urgent topics). The urgent sets overlap only partly on purpose.
PROFILES: tuple[tuple[str, dict[str, tuple[str, ...]], frozenset[str]], ...] = (
    (
        "acme_air",
        {
            "product": ("the booking app",),
            "account": ("frequent flyer account",),
            "item": ("flight ticket", "seat upgrade"),
        },
        frozenset({"refund", "delivery", "security"}),
    ),
    (
        "globex_bank",
        {
            "product": ("online banking", "the card app"),
            "account": ("bank account",),
            "item": ("debit card", "cheque book"),
        },
        frozenset({"security", "billing", "login"}),
    ),
    (
        "initech_saas",
        {"product": ("the dashboard", "the API"), "account": ("admin account",), "item": ("license key",)},
        frozenset({"outage", "login"}),
    ),
    (
        "umbrella_health",
        {
            "product": ("the patient portal",),
            "account": ("patient account",),
            "item": ("prescription", "test kit"),
        },
        frozenset({"delivery", "security", "outage"}),
    ),
    (
        "hooli_games",
        {
            "product": ("the game launcher",),
            "account": ("player account",),
            "item": ("skin bundle", "season pass"),
        },
        frozenset({"security", "outage"}),
    ),
    (
        "stark_telecom",
        {
            "product": ("mobile data", "the home router"),
            "account": ("phone account",),
            "item": ("sim card", "router"),
        },
        frozenset({"outage", "billing"}),
    ),
    (
        "wayne_retail",
        {"product": ("the web shop",), "account": ("shop account",), "item": ("parcel", "order")},
        frozenset({"delivery", "refund"}),
    ),
    (
        "tyrell_insure",
        {
            "product": ("the claims portal",),
            "account": ("policy account",),
            "item": ("claim payout", "policy document"),
        },
        frozenset({"billing", "refund", "security"}),
    ),
)


@dataclass(frozen=True)
class Example:
    customer_id: str
    text: str
    label: str


@dataclass(frozen=True)
class CustomerProfile:
    customer_id: str
    vocabulary: dict[str, tuple[str, ...]]
    urgent_topics: frozenset[str]
    label_noise: float = 0.04
    topics: tuple[str, ...] = tuple(sorted(TOPICS))  # what its requests are about, equally often

    def sample(self, rng: random.Random) -> Example:
        topic = rng.choice(self.topics)
        words = {slot: rng.choice(options) for slot, options in self.vocabulary.items()}
        body = rng.choice(TOPICS[topic]).format(**words)
        text = " ".join(p for p in (rng.choice(OPENERS), body, rng.choice(CLOSERS)) if p)
        urgent = topic in self.urgent_topics
        if rng.random() < self.label_noise:
            urgent = not urgent
        return Example(self.customer_id, text, LABELS[int(urgent)])


def customer_profiles(count: int, seed: int = 7) -> list[CustomerProfile]:
    """``count`` customers: the named profiles first, then generated ones with shuffled policies."""
    rng = random.Random(seed)
    profiles = [CustomerProfile(name, vocab, urgent) for name, vocab, urgent in PROFILES[:count]]
    for index in range(len(profiles), count):
        _, vocab, _ = PROFILES[index % len(PROFILES)]
        urgent = frozenset(rng.sample(sorted(TOPICS), k=rng.randint(2, 4)))
        profiles.append(CustomerProfile(f"customer_{index:04d}", vocab, urgent))
    return profiles


def shifted(profile: CustomerProfile, kind: str) -> CustomerProfile:
    """``profile`` after a planted shift of its requests (drift monitoring's demo and tests).

    :param kind: ``vocabulary`` (its products and items renamed, as after a rebrand or a new
        market) or ``topics`` (its requests all about outages and security, as in an incident).
    """
    if kind == "vocabulary":
        vocabulary: dict[str, tuple[str, ...]] = {
            "product": ("the quantum ledger",),
            "account": ("vault membership",),
            "item": ("hologram kit",),
        }
        return replace(profile, vocabulary=vocabulary)
    if kind == "topics":
        return replace(profile, topics=("outage", "security"))
    raise ValueError(f"unknown shift {kind!r}: use vocabulary or topics")


def generate_examples(profile: CustomerProfile, count: int, seed: int) -> Iterator[Example]:
    rng = random.Random(f"{seed}:{profile.customer_id}")
    for _ in range(count):
        yield profile.sample(rng)
