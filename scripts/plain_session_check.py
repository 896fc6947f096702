"""Cross-check of the speed figures: ONNX models timed the way a user runs them, with none of this project's code.

Each model gets a plain ``onnxruntime.InferenceSession(path, options)`` whose options set only the
intra-op thread count (and, for a ``NAME=PATH@KEY=VALUE`` argument, that one session config entry).
The models run interleaved on real MNIST test images read straight from the IDX file, in rounds;
every figure is printed with its range over the rounds, and ratios are against the first model.

    .venv/bin/python scripts/plain_session_check.py fp32=models/mnist-12.onnx \\
        int8=models/mnist-12-int8.onnx zoo=models/zoo-mnist-12-int8.onnx

A model with a fixed batch dimension of 1 (mnist-12 and the zoo's int8 model as published) is timed at batch 1
only; throughput ratios are against the first model that takes the throughput batch (for mnist-12, pass a
batch-capable copy, e.g. the one ``tuning.graph.rewrite.batch_capable_copy`` makes, as a second fp32 entry).
"""

from __future__ import annotations

import argparse
import gc
import gzip
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent


def load_images(count: int) -> np.ndarray:
    with gzip.open(ROOT / "data" / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz") as handle:
        pixels = np.frombuffer(handle.read(), dtype=np.uint8, offset=16)
    return (pixels.reshape(-1, 1, 28, 28)[:count] / np.float32(255)).astype(np.float32)


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.machine())


def session(spec: str, threads: int) -> tuple[str, ort.InferenceSession]:
    name, _, rest = spec.partition("=")
    path, _, entry = rest.partition("@")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if entry:
        key, _, value = entry.partition("=")
        options.add_session_config_entry(key, value)
    return name, ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def accepts(sess: ort.InferenceSession, batch: int) -> bool:
    dim = sess.get_inputs()[0].shape[0]
    return not isinstance(dim, int) or dim == batch


def time_round(sessions: dict, images: np.ndarray, batch: int, seconds: float) -> dict[str, float]:
    """Median run time in ms of each session at ``batch``, interleaved in turns of ~100 images."""
    turn = max(1, 100 // batch)
    feeds = [images[(k * batch) % (len(images) - batch):][:batch] for k in range(32)]
    runs: dict[str, list[int]] = {name: [] for name in sessions}
    for name, sess in sessions.items():
        for k in range(turn * 2):
            sess.run(None, {sess.get_inputs()[0].name: feeds[k % 32]})
    gc.disable()
    started = time.perf_counter()
    k = 0
    while time.perf_counter() - started < seconds * len(sessions):
        for name, sess in sessions.items():
            input_name = sess.get_inputs()[0].name
            for j in range(k, k + turn):
                began = time.perf_counter_ns()
                sess.run(None, {input_name: feeds[j % 32]})
                runs[name].append(time.perf_counter_ns() - began)
        k += turn
    gc.enable()
    return {name: float(np.median(values)) / 1e6 for name, values in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="NAME=PATH[@KEY=VALUE]")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="timed seconds per model, batch size and round")
    parser.add_argument("--batch", type=int, default=256, help="throughput batch size")
    args = parser.parse_args()
    sessions = dict(session(spec, args.threads) for spec in args.models)
    images = load_images(10_000)
    latency = {name: [] for name in sessions}
    throughput = {name: [] for name in sessions if accepts(sessions[name], args.batch)}
    for _ in range(args.rounds):
        for name, ms in time_round(sessions, images, 1, args.seconds).items():
            latency[name].append(ms)
        batched = {name: sessions[name] for name in throughput}
        for name, ms in time_round(batched, images, args.batch, args.seconds).items():
            throughput[name].append(args.batch * 1000 / ms)
    base = next(iter(sessions))
    batch_base = next(iter(throughput), None)
    print(f"CPU {cpu_model()}, onnxruntime {ort.__version__}, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.seconds} s per model and batch size; ratios per round, median (min-max), "
          f"vs {base} at batch 1 and vs {batch_base} at batch {args.batch}")
    for name in sessions:
        lat = np.array(latency[name]) * 1000
        lat_ratio = np.array(latency[name]) / np.array(latency[base])
        line = (f"{name:>14}  b1 p50 {np.median(lat):6.1f} us ({lat.min():.1f}-{lat.max():.1f})  "
                f"{np.median(lat_ratio):.2f}x ({lat_ratio.min():.2f}-{lat_ratio.max():.2f})")
        if name in throughput:
            thr = np.array(throughput[name])
            thr_ratio = thr / np.array(throughput[batch_base])
            line += (f"   b{args.batch} {np.median(thr):8,.0f} img/s ({thr.min():,.0f}-{thr.max():,.0f})  "
                     f"{np.median(thr_ratio):.2f}x ({thr_ratio.min():.2f}-{thr_ratio.max():.2f})")
        print(line)


if __name__ == "__main__":
    main()
