"""The input validators, with hypothesis over the order-id surface."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core import validators
from proxy.core.errors import BadRequest

SAFE = string.ascii_letters + string.digits + "._-"


@given(st.text(min_size=0, max_size=100))
def test_order_id_accepts_only_the_safe_alphabet(value: str) -> None:
    ok = (
        1 <= len(value) <= 64
        and value[0].isascii()
        and value[0].isalnum()
        and all(ch in SAFE for ch in value)
    )
    if ok:
        assert validators.order_id(value) == value
    else:
        with pytest.raises(BadRequest):
            validators.order_id(value)


@given(st.text(alphabet=SAFE, min_size=1, max_size=64).filter(lambda s: s[0].isalnum()))
def test_valid_ids_never_contain_separators_or_escapes(value: str) -> None:
    accepted = validators.order_id(value)
    for forbidden in ("/", "%", "\\"):
        assert forbidden not in accepted
    assert accepted not in (".", "..")


@pytest.mark.parametrize("value", ["2023-06-30", "2016-10-27", "2019-05-07", "2024-02-29"])
def test_real_dates_are_valid_versions(value: str) -> None:
    assert validators.api_version(value) == value


@pytest.mark.parametrize(
    "value", ["2023-02-30", "2023-6-30", "20230630", "2023-06-30T00:00", " 2023-06-30", ""]
)
def test_other_versions_are_refused(value: str) -> None:
    with pytest.raises(BadRequest):
        validators.api_version(value)


@given(st.text(max_size=200))
def test_request_id_is_always_safe(value: str) -> None:
    rid = validators.request_id(value)
    assert 1 <= len(rid) <= 128
    assert all(ch.isascii() and (ch.isalnum() or ch in "._:-") for ch in rid)


def test_flags() -> None:
    assert validators.flag("x", "true") is True
    assert validators.flag("x", "FALSE") is False
    with pytest.raises(BadRequest):
        validators.flag("x", "yes please")
