"""Objective latency's search on a LeNet with the controlled timing of tests/test_latency_search.py, run by every
rank of an MPI job (tests/test_distributed_latency.py): ``mpirun -np N python tests/mpi_latency_search.py CONFIG
MODEL OUT``. Rank 0 writes OUT (the chosen model's bytes) and OUT with suffix .json (the trials and the search's
record); the other ranks score what rank 0 sends them and write nothing.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from test_latency_search import LENET_INT8_MS, search

from tuning.config.loading import load_config


def main(argv: list[str]) -> None:
    config_path, model, out = (Path(arg) for arg in argv)
    outcome, *_ = search(load_config(config_path), model, LENET_INT8_MS)
    if outcome is None:  # a worker rank
        return
    out.write_bytes(outcome.model.SerializeToString(deterministic=True))
    record = {"trials": [dataclasses.asdict(trial) for trial in outcome.trials], "search": outcome.search}
    out.with_suffix(".json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1:])
