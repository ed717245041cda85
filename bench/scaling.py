"""Bench: how training time and memory grow with the number of films and with the image size.

    python bench/scaling.py [FOLDER] [--films 1000 5000 25000] [--sizes 96 128 160 224 320]
                            [--steps 30] [--chart docs/scaling.png]

Sets of 1,000 to 25,000 films (25,000 is about the RSNA challenge's size) are made by repeating
the real Kermany train films, cached at each size as pneumo caches any set (a uint8 .npy file
the training reads through a memory map). Each configuration trains the default CNN in a
process of its own, fed by pneumo's pipeline over the whole set, shuffled: images/s over
``--steps`` steady steps after warm-up, an epoch's time from that rate, and the process's peak
anonymous memory (RssAnon, sampled every 50 ms: what the process holds of its own, not the
mapped file's pages, which the kernel drops under pressure) beside what the films would take
held in memory as uint8. The number of films is varied at the default 160 px, the image size
at 5,000 films. ``--chart`` draws both as a Plotly figure, saved as PNG through headless Chromium.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from tests import memory

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray"
DEFAULT_SIZE = 160
SIZE_SWEEP_FILMS = 5000
WARMUP = 5


def repeated_films(folder: Path, size: int, count: int, out: Path) -> Path:
    """``count`` films at ``size`` px, the real train films repeated, as a .npy file written in chunks."""
    from pneumo.data import cache
    from pneumo.data.sources import FolderSource

    image_set = cache.load(FolderSource(folder), size)
    train = np.flatnonzero((image_set.records["split"] == "train").to_numpy())
    labels = image_set.records["label"].to_numpy()[train]
    path = out / f"films-{count}-{size}.npy"
    films = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, size, size))
    for start in range(0, count, len(train)):
        stop = min(count, start + len(train))
        films[start:stop] = image_set.images[train[: stop - start]]
    films.flush()
    np.save(out / f"labels-{count}.npy", np.resize(labels, count))
    return path


def measure(path: Path, steps: int) -> dict:
    """In this process: train the default CNN on every film of ``path`` for WARMUP + ``steps`` steps."""
    import keras

    from pneumo.training import models, pipeline
    from pneumo.training.config import TrainConfig

    films = np.load(path, mmap_mode="r")
    count, size = films.shape[0], films.shape[1]
    labels = np.load(path.parent / f"labels-{count}.npy")
    config = TrainConfig(image_size=size)
    peak = [memory.anonymous_bytes()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], memory.anonymous_bytes())

    threading.Thread(target=sample, daemon=True).start()
    keras.utils.set_random_seed(0)
    model = models.build(config)
    model.compile(keras.optimizers.Adam(config.learning_rate), "binary_crossentropy")
    data = pipeline.batches(films, np.arange(count), labels, config.batch_size, shuffle=True).repeat()
    model.fit(data, steps_per_epoch=WARMUP, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    rate = steps * config.batch_size / (time.perf_counter() - start)
    done.set()
    return {"films": count, "size": size, "images_per_s": rate, "epoch_s": count / rate,
            "peak_anon_mb": max(peak[0], memory.anonymous_bytes()) / 2**20, "films_in_ram_mb": films.nbytes / 2**20}


def run_one(folder: Path, work: Path, count: int, size: int, steps: int) -> dict:
    path = work / f"films-{count}-{size}.npy"
    if not path.exists():
        repeated_films(folder, size, count, work)
    out = subprocess.run([sys.executable, __file__, "--measure", str(path), "--steps", str(steps)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def chart(rows: list[dict], png: Path) -> None:
    """Epoch time (top) and peak memory against what the films would take (bottom), by number of
    films at 160 px (left) and by image size at 5,000 films (right)."""
    import plotly.graph_objects as go
    from playwright.sync_api import sync_playwright
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, vertical_spacing=0.08, horizontal_spacing=0.1,
                        subplot_titles=(f"Films (at {DEFAULT_SIZE} px)", f"Image size (at {SIZE_SWEEP_FILMS:,} films)",
                                        "", ""))
    for col, (sweep, x) in enumerate((("films", "films"), ("size", "size")), start=1):
        chosen = [r for r in rows if r["sweep"] == sweep]
        xs = [r[x] for r in chosen]
        fig.add_trace(go.Scatter(x=xs, y=[r["epoch_s"] / 60 for r in chosen], name="one epoch",
                                 mode="lines+markers", line_color="#0072B2", showlegend=col == 1), 1, col)
        fig.add_trace(go.Scatter(x=xs, y=[r["peak_anon_mb"] / 1024 for r in chosen], name="peak memory of the process",
                                 mode="lines+markers", line_color="#D55E00", showlegend=col == 1), 2, col)
        fig.add_trace(go.Scatter(x=xs, y=[r["films_in_ram_mb"] / 1024 for r in chosen],
                                 name="the films, if held in memory", mode="lines+markers",
                                 line={"color": "#999999", "dash": "dot"}, showlegend=col == 1), 2, col)
    fig.update_xaxes(type="log", row=2, col=1, title_text="films")
    fig.update_xaxes(type="log", row=1, col=1)
    fig.update_xaxes(row=2, col=2, title_text="image side (px)")
    fig.update_yaxes(title_text="minutes", row=1, col=1)
    fig.update_yaxes(title_text="GiB", row=2, col=1)
    fig.update_layout(width=1000, height=620, template="plotly_white", margin={"l": 60, "r": 20, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.12})
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        page_file = Path(tmp) / "chart.html"
        fig.write_html(page_file, include_plotlyjs=True, config={"displayModeBar": False})
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1000, "height": 620})
        page.goto(page_file.as_uri())
        page.wait_for_selector(".main-svg")
        page.screenshot(path=str(png))
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--films", type=int, nargs="+", default=[1000, 5000, 25000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128, 160, 224, 320])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--chart", type=Path, help="save the figure as this PNG")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process's own job
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.steps)))
        return
    if not args.folder.is_dir():
        sys.exit(f"no data at {args.folder}")
    plan = [("films", n, DEFAULT_SIZE) for n in args.films] + [("size", SIZE_SWEEP_FILMS, s) for s in args.sizes]
    print(f"default CNN, batch 32, {args.steps} steps after {WARMUP} of warm-up; {os.cpu_count()} CPU(s)")
    print(f"{'sweep':<7}{'films':>8}{'px':>5}{'images/s':>10}{'epoch min':>11}{'peak MB':>9}{'films MB':>10}")
    rows, measured = [], {}
    with tempfile.TemporaryDirectory(prefix="pneumo-scaling-") as work:
        for sweep, count, size in plan:
            if (count, size) not in measured:  # 5,000 films at 160 px is in both sweeps
                measured[count, size] = run_one(args.folder, Path(work), count, size, args.steps)
            row = {"sweep": sweep, **measured[count, size]}
            rows.append(row)
            print(f"{sweep:<7}{count:>8,}{size:>5}{row['images_per_s']:>10.1f}{row['epoch_s'] / 60:>11.1f}"
                  f"{row['peak_anon_mb']:>9.0f}{row['films_in_ram_mb']:>10.0f}", flush=True)
    if args.chart:
        chart(rows, args.chart)
        print(f"chart: {args.chart}")


if __name__ == "__main__":
    main()
