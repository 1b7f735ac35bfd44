"""Query values callers send: `txn_uuid` and the boolean flags Juspay reads as true/1."""

from __future__ import annotations

import pytest

from proxy.core import validators
from proxy.core.errors import BadRequest


@pytest.mark.parametrize(
    "value",
    ["eulwh5QbZSBvw35eWnH", "moztmUw6ryK1DZXwBEV", "a", "A1._-z", "x" * 64],
)
def test_juspay_style_txn_uuids_are_accepted(value: str) -> None:
    assert validators.txn_uuid(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "x" * 65,  # bounded
        ".hidden",  # must start with a letter or digit
        "-flag",
        "..",
        "a/b",
        "a%2Fb",
        "a b",
        "a\nb",
        "a\x00",
        "a?b=c",
        "a&b",
        "tëst",
    ],
)
def test_unsafe_txn_uuids_are_a_bad_request_that_does_not_echo_them(value: str) -> None:
    with pytest.raises(BadRequest) as info:
        validators.txn_uuid(value)
    assert "txn_uuid" in str(info.value)
    if value:
        assert value not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("tRuE", True),
        ("1", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
    ],
)
def test_flags_read_true_or_1_in_any_case_as_on(value: str, expected: bool) -> None:
    result = validators.flag("options.add_full_gateway_response", value)
    assert result is expected


@pytest.mark.parametrize("value", ["yes", "on", "", " true", "2", "truthy"])
def test_other_flag_values_are_a_bad_request_naming_the_parameter(value: str) -> None:
    with pytest.raises(BadRequest, match=r"^options\.add_full_gateway_response must be"):
        validators.flag("options.add_full_gateway_response", value)
