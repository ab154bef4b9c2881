"""Operator arguments that arrive as rendered templates."""

from __future__ import annotations

import re

import pytest

from retrain.errors import InputError
from retrain_airflow.arguments import as_pack_size

REFUSED = "pack_size must be a whole number of at least 1 or empty, got {!r}"


@pytest.mark.parametrize(("value", "size"), [(None, None), ("None", None), ("", None), (32, 32), ("8", 8)])
def test_a_pack_size_is_a_whole_number_or_the_suite_s_choice(value: object, size: int | None) -> None:
    assert as_pack_size(value) == size  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, "0", "eight", "1.5", True])
def test_a_bad_pack_size_is_refused_naming_it(value: int | str) -> None:
    with pytest.raises(InputError, match=re.escape(REFUSED.format(value))):
        as_pack_size(value)
