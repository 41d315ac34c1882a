"""Coverage tests for streamer.manifests: streaming key extraction, hashing, errors, accessors."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import Any

import ijson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamer.errors import InputError
from streamer.manifests import (
    KIND_COMPARISON,
    KIND_REST,
    KIND_WS,
    Manifest,
    iter_divergence_rows,
    markets_by_token,
    read_manifest,
)

KEYS = ("gate_status", "review_gate", "status", "output_files", "markets")

# JSON values Python's json reads and writes back identically (64-bit integers but -2**63, which
# ijson's yajl2_c backend refuses like bigger ones, see the xfail below; finite floats; strings
# without lone surrogates)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63) + 1, 2**63 - 1),
              st.floats(allow_nan=False, allow_infinity=False), text),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(text, children, max_size=3)),
    max_leaves=15,
)
key_names = st.sampled_from(["gate_status", "review_gate", "status", "output_files", "markets", "other", "a b",
                             "gate_status_x", "é"])


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def manifest_of(values: dict[str, Any]) -> Manifest:
    return Manifest("m.json", Path("m.json"), values, 0, "")


# ---------------------------------------------------------------- read_manifest


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(key_names, json_values, max_size=6), wanted=st.sets(key_names, max_size=4),
       indent=st.sampled_from([None, 2]), trailing=st.sampled_from(["", "\n", "  \n\n"]))
def test_read_manifest_picks_the_asked_keys_and_hashes_the_file(tmp_path_factory: pytest.TempPathFactory,
                                                                document: dict[str, Any], wanted: set[str],
                                                                indent: int | None, trailing: str) -> None:
    raw = (json.dumps(document, indent=indent, ensure_ascii=False) + trailing).encode("utf-8")
    path = write(tmp_path_factory.mktemp("m") / "manifest.json", raw)
    manifest = read_manifest(path, tuple(sorted(wanted)))
    assert manifest.values == {key: value for key, value in json.loads(raw).items() if key in wanted}
    assert manifest.sha256 == hashlib.sha256(raw).hexdigest()
    assert manifest.size == len(raw)
    assert manifest.path == path and manifest.name == str(path)


def test_read_manifest_ignores_nested_keys_of_the_same_name(tmp_path: Path) -> None:
    raw = json.dumps({"outer": {"gate_status": "NESTED", "markets": [1]}, "list": [{"status": "x"}],
                      "gate_status": "TOP", "big": ["x" * 1000] * 50})
    manifest = read_manifest(write(tmp_path / "m.json", raw), KEYS)
    assert manifest.values == {"gate_status": "TOP"}
    assert manifest.sha256 == hashlib.sha256(raw.encode()).hexdigest()


def test_read_manifest_duplicate_key_last_wins_like_json(tmp_path: Path) -> None:
    raw = '{"gate_status": "FIRST", "output_files": [1], "gate_status": "SECOND", "output_files": {"a": [2]}}'
    manifest = read_manifest(write(tmp_path / "m.json", raw), KEYS)
    assert manifest.values == json.loads(raw) == {"gate_status": "SECOND", "output_files": {"a": [2]}}


def test_read_manifest_hashes_everything_after_the_keys(tmp_path: Path) -> None:
    raw = '{"gate_status": "G", "rows": [' + ",".join(['{"n": %d}' % n for n in range(20000)]) + "]}\n"
    manifest = read_manifest(write(tmp_path / "m.json", raw), ("gate_status",))
    assert manifest.values == {"gate_status": "G"}
    assert manifest.size == len(raw) and manifest.sha256 == hashlib.sha256(raw.encode()).hexdigest()
    assert manifest.artifact("10b_manifest") == {"path": str(tmp_path / "m.json"), "kind": "10b_manifest",
                                                 "bytes": len(raw), "sha256": manifest.sha256}


def test_read_manifest_accepts_path_like_and_names_it_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "data" / "m.json", '{"status": "S"}')
    manifest = read_manifest("data/m.json", KEYS)
    assert manifest.name == "data/m.json" and manifest.gate() == "S"
    assert manifest.artifact("k")["path"] == "data/m.json"
    assert read_manifest(Path("data/m.json"), KEYS).values == {"status": "S"}


def assert_one_line_error(error: pytest.ExceptionInfo[InputError], name: str) -> None:
    message = str(error.value)
    assert "\n" not in message and "\r" not in message
    assert name in message


def test_read_manifest_missing(tmp_path: Path) -> None:
    name = str(tmp_path / "nope.json")
    with pytest.raises(InputError, match=r"^cannot read manifest .*nope\.json: No such file or directory$") as error:
        read_manifest(name, KEYS)
    assert_one_line_error(error, name)


def test_read_manifest_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="it is a directory") as error:
        read_manifest(tmp_path, KEYS)
    assert_one_line_error(error, str(tmp_path))


@pytest.mark.parametrize("content", ['{"gate_status": "G"', '{"a": 1,}', '{"a": 1} trailing', '{"a": 1}{"b": 2}',
                                     "", "   \n", "{'a': 1}", b'{"a": "\xff\xfe"}', b"\x1f\x8b\x08\x00"],
                         ids=["truncated", "trailing-comma", "trailing-text", "two-objects", "empty", "blank",
                              "single-quotes", "not-utf8", "gzip"])
def test_read_manifest_invalid_json(tmp_path: Path, content: str | bytes) -> None:
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(InputError, match=r"^manifest .*bad\.json is not valid JSON") as error:
        read_manifest(path, KEYS)
    assert_one_line_error(error, str(path))
    reason = str(error.value).split(" is not valid JSON ", 1)[1]
    # a reason a reader can use: where the JSON breaks, or what the file is; no parser's raw bytes
    assert "b'" not in reason and "\\x" not in reason, reason
    if isinstance(content, bytes):
        assert reason == ("(it is gzip-compressed data)" if content[:2] == b"\x1f\x8b" else "(it is not UTF-8 text)")
    else:
        assert re.search(r"line \d+ column \d+", reason), reason


@pytest.mark.parametrize("content", ["[]", '[{"gate_status": "G"}]', "3", '"text"', "null", "true"])
def test_read_manifest_not_an_object(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "list.json", content)
    with pytest.raises(InputError, match=r"^manifest .*list\.json is not a JSON object$") as error:
        read_manifest(path, KEYS)
    assert_one_line_error(error, str(path))


@pytest.mark.parametrize("content", ['{"gate_status": "G", "ratio": NaN}', '{"gate_status": "G", "x": Infinity}',
                                     '{"gate_status": "G", "x": 1e400}'], ids=["nan", "infinity", "overflow"])
def test_read_manifest_reads_what_python_json_reads_non_finite(tmp_path: Path, content: str) -> None:
    path = write(tmp_path / "m.json", content)
    json.loads(content)
    assert read_manifest(path, KEYS).values == {"gate_status": "G"}


def test_read_manifest_gone_before_its_whole_read_is_an_input_error(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A manifest the streaming parser refuses is read again whole; if it is gone by then, that is
    still "cannot read manifest" (an InputError), not a bare OSError the CLI would call an output's."""
    path = write(tmp_path / "m.json", '{"gate_status": "G", "ratio": NaN}')

    def gone(self: Path) -> bytes:
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(Path, "read_bytes", gone)
    with pytest.raises(InputError, match=r"^cannot read manifest .*m\.json: No such file or directory$") as error:
        read_manifest(path, KEYS)
    assert_one_line_error(error, str(path))


@pytest.mark.parametrize("small", [False, True], ids=["token-id", "minus-2-to-the-63"])
def test_read_manifest_reads_big_integers(tmp_path: Path, small: bool) -> None:
    if small:
        content = json.dumps({"gate_status": "G", "n": -(2**63)})
        assert read_manifest(write(tmp_path / "m.json", content), KEYS).values == {"gate_status": "G"}
        return
    token = 71321045679252212594626385532706912750332728571942532289631379312455583992563
    content = json.dumps({"gate_status": "G", "markets": [{"tokens": [{"token_id": token, "outcome": "Yes"}]}]})
    manifest = read_manifest(write(tmp_path / "m.json", content), KEYS)
    assert markets_by_token(manifest) == {str(token): {"market_slug": None, "condition_id": None, "outcome": "Yes"}}


# ---------------------------------------------------------------- Manifest accessors


def test_manifest_files_in_order_of_kind() -> None:
    manifest = manifest_of({"output_files": [
        {"path": "ws-1.jsonl.gz", "kind": KIND_WS}, {"path": "rest.jsonl.gz", "kind": KIND_REST},
        "not an entry", None, {"kind": KIND_WS, "path": "ws-2.jsonl.gz"}, {"path": "x", "kind": "other"},
        {"path": "ws-1.jsonl.gz", "kind": KIND_WS}, {"path": 3}]})
    assert manifest.files(KIND_WS) == ["ws-1.jsonl.gz", "ws-2.jsonl.gz", "ws-1.jsonl.gz"]
    assert manifest.files(KIND_REST) == ["rest.jsonl.gz"]
    assert manifest.files(KIND_COMPARISON) == []
    assert manifest_of({}).files(KIND_WS) == []
    assert manifest_of({"output_files": None}).files(KIND_WS) == []


@pytest.mark.parametrize("output_files", [{"path": "x", "kind": KIND_WS}, "x", 3])
def test_manifest_files_not_a_list(output_files: Any) -> None:
    with pytest.raises(InputError, match=r"^manifest m\.json: output_files is not a list$"):
        manifest_of({"output_files": output_files}).files(KIND_WS)


@pytest.mark.parametrize("where", ["wanted", "ignored"])
def test_read_manifest_refuses_nesting_python_json_cannot_write_back(tmp_path: Path, where: str) -> None:
    deep = "[" * 5_000 + "]" * 5_000  # (before: a traceback from the writer; and O(depth^2) memory)
    key = "gate_status" if where == "wanted" else "zzz"
    path = write(tmp_path / "m.json", f'{{"status": "S", "{key}": {deep}}}')
    with pytest.raises(InputError, match="m.json nests more than 900 levels deep"):
        read_manifest(path, KEYS)


def test_read_manifest_takes_nesting_python_json_takes(tmp_path: Path) -> None:
    nested: Any = "G"
    for _ in range(899):
        nested = [nested]
    path = write(tmp_path / "m.json", json.dumps({"gate_status": nested, "zzz": nested, "status": "S"}))
    manifest = read_manifest(path, KEYS)
    assert manifest.values == {"gate_status": nested, "status": "S"}


def test_manifest_files_path_with_a_nul_character() -> None:
    with pytest.raises(InputError, match="holds a NUL character"):
        manifest_of({"output_files": [{"kind": KIND_WS, "path": "ws\x00.jsonl.gz"}]}).files(KIND_WS)


@pytest.mark.parametrize("entry", [{"kind": KIND_WS}, {"kind": KIND_WS, "path": ""}, {"kind": KIND_WS, "path": 5},
                                   {"kind": KIND_WS, "path": None}, {"kind": KIND_WS, "path": ["a"]}])
def test_manifest_files_entry_without_path(entry: dict[str, Any]) -> None:
    manifest = manifest_of({"output_files": [entry]})
    with pytest.raises(InputError, match=f"^manifest m\\.json: an output_files entry of kind {KIND_WS} has no path$"):
        manifest.files(KIND_WS)
    assert manifest.files(KIND_REST) == []  # entries of other kinds are not checked


@pytest.mark.parametrize("values, expected", [
    ({"gate_status": "G", "review_gate": "R", "status": "S"}, "G"),
    ({"review_gate": "R", "status": "S"}, "R"),
    ({"status": "S"}, "S"),
    ({"gate_status": "", "review_gate": None, "status": "S"}, "S"),  # falsy values fall through, as `or` does
    ({"gate_status": 0, "review_gate": "R"}, "R"),
    ({"gate_status": None}, None),
    ({}, None),
    ({"gate_status": "", "status": ""}, ""),
])
def test_manifest_gate_fallback_order(values: dict[str, Any], expected: Any) -> None:
    assert manifest_of(values).gate() == expected
    review = values
    assert expected == (review.get("gate_status") or review.get("review_gate") or review.get("status"))


def test_manifest_get() -> None:
    manifest = manifest_of({"gate_status": "G"})
    assert manifest.get("gate_status") == "G"
    assert manifest.get("missing") is None and manifest.get("missing", 5) == 5


def test_read_manifest_then_gate_and_files(tmp_path: Path) -> None:
    raw = json.dumps({"review_gate": "ACCEPTED", "notes": {"gate_status": "nested"},
                      "output_files": [{"path": "c.jsonl.gz", "kind": KIND_COMPARISON}]})
    manifest = read_manifest(write(tmp_path / "review.json", raw), KEYS)
    assert manifest.gate() == "ACCEPTED"
    assert manifest.files(KIND_COMPARISON) == ["c.jsonl.gz"]


# ---------------------------------------------------------------- markets_by_token


def test_markets_by_token() -> None:
    manifest = manifest_of({"markets": [
        {"condition_id": "0xa", "market_slug": "will-a", "question": "A?",
         "tokens": [{"token_id": "101", "outcome": "Yes"}, {"token_id": 102, "outcome": "No"}]},
        {"condition_id": "0xb", "tokens": [{"token_id": "201"}, {"outcome": "orphan"}, {"token_id": None}, "x"]},
        {"condition_id": "0xc", "tokens": "not a list"},
        "not a market",
        {"market_slug": "later", "tokens": [{"token_id": "101", "outcome": "Again"}]},
    ]})
    assert markets_by_token(manifest) == {
        "101": {"market_slug": "later", "condition_id": None, "outcome": "Again"},  # a later listing wins
        "102": {"market_slug": "will-a", "condition_id": "0xa", "outcome": "No"},
        "201": {"market_slug": None, "condition_id": "0xb", "outcome": None},
    }
    # what was left out is said (for stderr): 3 tokens of 0xb, the market 0xc, "not a market"
    assert markets_by_token(manifest).notes == [
        "5 entries of the 10B manifest's markets (a market without a tokens list, or a token without token_id) "
        "left out: rows of their tokens get no market labels"]


@pytest.mark.parametrize("markets, note", [
    (None, None), ([], None),
    ({}, "a JSON object"), ("x", "a JSON string"), (3, "a JSON number")])
def test_markets_by_token_without_a_list(markets: Any, note: str | None) -> None:
    labels = markets_by_token(manifest_of({"markets": markets}))
    assert labels == {}
    assert labels.notes == ([] if note is None else [
        f"the 10B manifest's markets is not a list ({note}): no comparison row gets market labels"])
    assert markets_by_token(manifest_of({})) == {} and markets_by_token(manifest_of({})).notes == []


# ---------------------------------------------------------------- iter_divergence_rows


def test_iter_divergence_rows(tmp_path: Path) -> None:
    rows = [{"comparison_line": n, "classification": "size_only_unexplained", "affects": {"size_only": True},
             "received_epoch": 1776618000.123456, "nested": [{"x": None}]} for n in range(1, 6)]
    references = [{"comparison_line": n, "raw_websocket_context_lines": [n, n + 1]} for n in range(1, 6)]
    document = {"divergence_rows": rows, "raw_and_rest_row_references": references, "gate_status": "G"}
    path = write(tmp_path / "out.json", json.dumps(document, indent=2))
    assert list(iter_divergence_rows(path)) == rows
    assert list(iter_divergence_rows(path, "raw_and_rest_row_references")) == references
    assert list(iter_divergence_rows(path, "absent")) == []


def test_iter_divergence_rows_streams(tmp_path: Path) -> None:
    """The first rows come out before the parser reaches the (broken) end of a huge file."""
    head = '{"divergence_rows": [' + ",".join('{"comparison_line": %d}' % n for n in range(1, 2001))
    path = write(tmp_path / "partial.json", head + ", {broken")
    first = list(itertools.islice(iter_divergence_rows(path), 3))
    assert first == [{"comparison_line": 1}, {"comparison_line": 2}, {"comparison_line": 3}]
    rows = iter_divergence_rows(path)
    with pytest.raises(ijson.JSONError):
        for _row in rows:
            pass
