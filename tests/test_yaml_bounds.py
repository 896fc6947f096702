"""The YAML bounds of tuning/config/schema.py at their edges: nesting depth, expanded size, aliases, duplicate keys.

Documents are built here to sit exactly at a bound or one step past it; the sizes are counted from
how they are built (a list is one value plus its items, a scalar one value). ``--set`` values go
through the same parser as config files, so most cases are parsed as overrides.
"""

from __future__ import annotations

import pytest

from tuning.config.loading import (
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    load_config,
    parse_override,
)
from tuning.errors import ConfigError

pytestmark = pytest.mark.fast


def parse_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_override(f"x={text}")
    return str(caught.value)


def test_lists_nested_up_to_the_depth_bound_parse_and_one_more_is_refused():
    deepest = "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH
    value = parse_override(f"x={deepest}")[1]
    for _ in range(MAX_YAML_DEPTH - 1):
        value = value[0]
    assert value == []
    too_deep = "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1)
    assert parse_error(too_deep).endswith(
        f"not valid YAML at line 1, column {MAX_YAML_DEPTH + 1}: nested more than {MAX_YAML_DEPTH} levels deep"
    )


def alias_chain(links: int) -> str:
    """[&a1 [0], &a2 [*a1], ...]: the k-th list holds the one before it, so it expands k + 1 levels deep."""
    items = ["&a1 [0]"] + [f"&a{k} [*a{k - 1}]" for k in range(2, links + 1)]
    return "[" + ", ".join(items) + "]"


def test_aliases_may_expand_to_the_depth_bound_but_not_past_it():
    # The root list adds one level and the scalar at the bottom one more: links + 2 levels in all.
    accepted = MAX_YAML_DEPTH + 1 - 2
    assert len(parse_override(f"x={alias_chain(accepted)}")[1]) == accepted
    assert parse_error(alias_chain(accepted + 1)).endswith(
        f"not valid YAML: aliases expand to values nested more than {MAX_YAML_DEPTH} levels deep"
    )


def fan_out(extra: int) -> str:
    """A list of 270 zeros and 368 aliases to it: 1 + 369 * 271 = 100,000 values, plus ``extra`` scalars."""
    assert 1 + 369 * 271 == MAX_YAML_NODES
    return "[&z [" + ", ".join(["0"] * 270) + "]" + ", *z" * 368 + ", 1" * extra + "]"


def test_aliases_may_expand_to_the_size_bound_but_not_one_value_more():
    assert len(parse_override(f"x={fan_out(0)}")[1]) == 369
    assert parse_error(fan_out(1)).endswith(
        f"not valid YAML: aliases expand to more than {MAX_YAML_NODES} values; refusing to expand them"
    )


def test_an_alias_used_again_after_its_value_is_complete_is_not_a_cycle():
    assert parse_override("x=[[&a [1]], [*a]]")[1] == [[[1]], [[1]]]


def test_an_alias_inside_its_own_value_is_refused_at_the_anchor():
    text = "&a [*a]"
    column = text.index("&a") + 1
    assert parse_error(text) == (
        f"--set 'x={text}': not valid YAML at line 1, column {column}: an alias refers to a value that contains it"
    )


def test_a_key_given_twice_is_refused_at_its_second_place(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("calibration:\n  seed: 1\n  seed: 2\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: not valid YAML at line 3, column 3: duplicate key 'seed'"


def test_duplicates_are_still_found_after_a_merge_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {seed: 1}\ncalibration:\n  <<: *b\n  sampling_size: 5\n  sampling_size: 6\n")
    with pytest.raises(ConfigError, match="duplicate key 'sampling_size'"):
        load_config(path)


def test_two_merge_keys_are_not_duplicates():
    merged = parse_override("x={a: &a {p: 1}, b: &b {q: 2}, c: {<<: *a, <<: *b}}")[1]
    assert merged["c"] == {"p": 1, "q": 2}


def test_a_key_that_is_a_list_is_one_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("? [1, 2]\n: v\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: not valid YAML at line 1")


def test_bytes_that_are_not_utf8_are_one_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xc3\x28 not utf-8\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: not valid YAML: invalid YAML"
