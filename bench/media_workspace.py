"""Writes the media workspace benchmark's project through the real client: 20 runs, each 200
steps of 3 image keys (128x128 RGB), 5 histogram keys and a loss, into the server at
CAIRN_BASE_URL (project bench/media-bench). ui/bench/media.sh runs it, then ui/bench/media.mjs.
"""

import os
import sys
import time

import numpy

import cairn

RUNS = int(os.environ.get("RUNS", 20))
STEPS = int(os.environ.get("STEPS", 200))


def main() -> None:
    started = time.perf_counter()
    rng = numpy.random.default_rng(11)
    yy, xx = numpy.mgrid[0:128, 0:128]
    for r in range(RUNS):
        run = cairn.init(entity="bench", project="media-bench", id=f"m{r:02d}", name=f"media-{r:02d}", config={"lr": 10 ** -(1 + r % 4), "seed": r})
        for step in range(STEPS):
            # A moving blob over noise: each step's image differs, as a model's samples do.
            cx, cy = (step * 3 + r * 7) % 128, (step * 5 + r * 11) % 128
            blob = numpy.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 300.0)
            base = (blob[..., None] * numpy.array([255, 180, 60])).astype(numpy.uint8)
            noise = rng.integers(0, 40, size=(128, 128, 3), dtype=numpy.uint8)
            row = {
                "samples/input": cairn.Image(base + noise),
                "samples/prediction": cairn.Image(numpy.roll(base, step % 9, axis=1)),
                "samples/error": cairn.Image(numpy.abs(base.astype(int) - numpy.roll(base, step % 9, axis=1)).astype(numpy.uint8)),
                "loss": 1.0 / (step + 1) + r * 0.01,
            }
            for k in range(5):
                row[f"weights/layer{k}"] = cairn.Histogram(rng.normal(step / 50 + k, 1 + k / 5, 400), num_bins=32)
            run.log(row)
        run.finish()
        print(f"run {r + 1}/{RUNS} stored ({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
