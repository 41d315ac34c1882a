"""The manifest comparison the parity tests rely on is type-strict and names the difference."""

from __future__ import annotations

import pytest

from tests.refcompare import assert_equal_manifests, first_difference


@pytest.mark.parametrize("left, right", [(1, 1.0), (True, 1), (0, False), ([1], [1.0]),
                                         ({"a": {"b": 2}}, {"a": {"b": 2.0}})])
def test_values_equal_under_python_eq_but_of_another_json_type_differ(left: object, right: object) -> None:
    assert left == right  # what a plain == accepts
    assert first_difference(left, right) is not None
    with pytest.raises(AssertionError, match="differs"):
        assert_equal_manifests({"key": left}, {"key": right})


def test_equal_manifests_pass_and_a_missing_key_is_named() -> None:
    manifest = {"row_counts": {"raw_websocket_messages": 3}, "divergence_rows": [{"received_epoch": 1.5}]}
    assert_equal_manifests(manifest, {**manifest})
    assert first_difference([1, 2], [1, 2, 3]) == ": 2 items in the reference, 3 in streamer"
    with pytest.raises(AssertionError, match="only in the second"):
        assert_equal_manifests(manifest, {**manifest, "extra": 1})
