"""Every numeric bound of the config schema at its edge: the last allowed value loads, the first refused one
is a ConfigError naming the key.

The table is written from what the keys mean (README's configuration table, docs/gate.md), not read from
the schema: a bound moved in tuning/config/schema.py (``gt=0`` to ``ge=0``, ``lt=1`` to ``le=1``) fails here.
Mutation testing cannot catch such a change (mutmut does not mutate class bodies: docs/mutation.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from tuning.config.loading import load_config
from tuning.config.schema import PipelineConfig
from tuning.errors import ConfigError

pytestmark = pytest.mark.fast

SHA256 = "5c688690f8bacf667d4c2074af5ad0646ca328d7ab03eccf944a65b320171bdd"

# key, values that must load, values that must be refused.
BOUNDS: list[tuple[str, list[Any], list[Any]]] = [
    # README: "divides after subtracting the mean; in [1e-6, 1e6]"; the mean "in [-1e6, 1e6]"
    ("dataset.std", [1e-6, 0.3081, 1e6], [0.0, 9.99e-7, -1.0, 1.000001e6]),
    ("dataset.mean", [-1e6, 0.0, 1e6], [-1.000001e6, 1.000001e6]),
    # README: "tolerated loss, in [0, 1)"
    ("tuning.accuracy_criterion.tolerance", [0.0, 0.999999], [1.0, 1.5, -1e-9]),
    # README: "more than this fraction above"; a fraction of 1 or more would tie every candidate
    ("tuning.latency.tie_margin", [0.0, 0.999999], [1.0, -1e-9]),
    # Counts of images, trials, rounds, threads and batch sizes: at least one.
    ("calibration.sampling_size", [1], [0, -1]),
    ("calibration.batch_size", [1], [0]),
    ("evaluation.batch_size", [1], [0]),
    ("tuning.max_trials", [1], [0]),
    ("tuning.latency.iterations", [1], [0]),
    ("tuning.latency.rounds", [1], [0]),
    ("benchmark.iterations", [1], [0]),
    ("benchmark.intra_op_threads", [1], [0]),
    ("model.max_bytes", [1], [0]),
    ("benchmark.batch_sizes", [[1], [1, 256]], [[], [0], [1, 0], [-1]]),
    # Seeds, warm-up runs and "0: no time limit" start at zero.
    ("calibration.seed", [0], [-1]),
    ("tuning.seed", [0], [-1]),
    ("tuning.timeout_s", [0], [-1]),
    ("tuning.latency.warmup", [0], [-1]),
    ("benchmark.warmup", [0], [-1]),
    # docs/gate.md: percentages and percentage points of accuracy.
    ("gates.max_int8_top1_error_pct", [0.0, 100.0], [-0.01, 100.01]),
    ("gates.max_accuracy_drop_pp", [0.0, 100.0], [-0.01, 100.01]),
    ("gates.baseline_accuracy_tolerance_pp", [0.0], [-0.01]),
    # At 100 % the throughput check could never fail.
    ("gates.baseline_performance_tolerance_pct", [0.0, 99.99], [100.0, -0.01]),
    # Ratios are positive, or null to switch the check off.
    ("gates.max_latency_ratio", [None, 1e-6], [0.0, -1.0]),
    ("gates.min_throughput_ratio", [None, 1e-6], [0.0, -1.0]),
    # A sha256 is 64 hex digits; null means "use the local file unverified".
    ("model.sha256", [SHA256, None], [SHA256[:-1], SHA256 + "0", "", SHA256[:-1] + "g"]),
]


def value_at(config: PipelineConfig, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize(("key", "allowed"), [(key, value) for key, good, _ in BOUNDS for value in good])
def test_the_edge_of_the_allowed_range_loads(key: str, allowed: Any) -> None:
    loaded = value_at(load_config(None, {key: allowed}), key)
    assert (list(loaded) if isinstance(loaded, tuple) else loaded) == allowed


@pytest.mark.parametrize(("key", "refused"), [(key, value) for key, _, bad in BOUNDS for value in bad])
def test_just_past_the_edge_is_refused_naming_the_key(key: str, refused: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {key: refused})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"<defaults>: {key}"), message


def test_every_bounded_key_exists_in_the_schema() -> None:
    # A renamed key would make its rows above test nothing but the unknown-key error.
    defaults = PipelineConfig()
    for key, _, _ in BOUNDS:
        value_at(defaults, key)
