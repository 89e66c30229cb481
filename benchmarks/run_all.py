"""Every benchmark in one command, with a Markdown summary beside the JSON results.

    .venv/bin/python benchmarks/run_all.py                  # CPU settings (about 15 min on 2 cores)
    .venv/bin/python benchmarks/run_all.py --device cuda    # GPU settings: released sizes, bf16, MFU
    .venv/bin/python benchmarks/run_all.py --only codec,lightningdit
    .venv/bin/python benchmarks/run_all.py --quick --out /tmp/bench   # seconds-long smoke run, nothing recorded

``--quick`` runs the benchmarks two (or ``--jobs``) at a time: it checks that they run, times
nothing, and most of its seconds are interpreters starting. Timed runs go one at a time.

Each benchmark runs in its own process (its own peak memory, its own thread pool) with the
settings below for the device, appends its JSON line to ``benchmarks/results/<name>.jsonl``
and is summarised in ``benchmarks/results/SUMMARY-<device>.md`` (+ ``.json``): machine,
versions, settings, figures, and each path beside the baseline timed in the same process.
Run it on an idle machine: on a 2-core CPU any other busy process distorts every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

#: benchmark -> arguments, per device kind
SETTINGS: dict[str, dict[str, list[str]]] = {
    "codec": {
        "cpu": ["--batch-sizes", "1,4", "--repeats", "1"],  # the plugins autocast on GPU only
        "cuda": ["--batch-sizes", "1,4,16,64,256", "--precisions", "fp32,bf16", "--repeats", "3"],
        "quick": ["--models", "sd-vae-f8d4", "--batch-sizes", "1", "--resolution", "64", "--repeats", "1"],
    },
    "vtp_pretrain": {
        "cpu": ["--recipe", "tiny"],
        "cuda": ["--recipe", "large", "--clip-batch", "64", "--precision", "bf16"],
        "quick": ["--recipe", "tiny", "--clip-batch", "8", "--repeat", "1"],
    },
    "lightningdit": {
        "cpu": ["--size", "tiny/1", "--channels", "16", "--side", "8", "--batch", "32", "--steps", "10"],
        "cuda": ["--size", "XL/1", "--channels", "32", "--side", "16", "--batch", "64", "--steps", "20", "--compile"],
        "quick": ["--size", "micro/1", "--channels", "4", "--side", "4", "--batch", "8", "--steps", "2", "--sample-steps", "2"],
    },
    "fid_extractor": {
        "cpu": ["--batches", "32", "--dtypes", "float32,float64"],
        "cuda": ["--batches", "64,256", "--dtypes", "float32,float64", "--repeats", "5"],
        "quick": ["--batches", "2", "--dtypes", "float32", "--repeats", "1", "--size", "64"],
    },
    "data_loading": {
        "cpu": ["--images", "512", "--workers", "0,1,2"],
        "cuda": ["--images", "2048", "--workers", "0,4,8"],
        "quick": ["--images", "16", "--workers", "0,1", "--batch", "8"],
    },
    "probe_grid": {
        "cpu": [],
        "cuda": ["--width", "1024", "--classes", "1000", "--samples", "100000", "--iterations", "200"],
        "quick": ["--samples", "512", "--iterations", "2", "--batch", "128", "--classes", "4"],
    },
    "stats": {
        "cpu": ["--sizes", "256,1000,5000"],  # --separation: the images-needed study (minutes)
        "cuda": ["--sizes", "256,1000,5000"],  # numpy only: the same CPU work
        "quick": ["--sizes", "32", "--dim", "64", "--resamples", "20", "--large-resamples", "2"],
    },
    "reconstruction": {
        "cpu": ["--images", "128", "--resolution", "64"],
        "cuda": ["--images", "1024", "--resolution", "256"],
        "quick": ["--images", "8", "--resolution", "32", "--batch-size", "8"],
    },
    "worker_split": {  # CPU cores shared by worker processes: no GPU setting
        "cpu": [],
        "quick": ["--only", "dit", "--steps", "3"],
    },
}


def run(name: str, arguments: list[str], device: str, record: bool) -> dict[str, Any]:
    """Run ``bench_<name>.py``; its result (the JSON line it appended, or parsed from its output)."""
    command = [sys.executable, str(HERE / f"bench_{name}.py"), *arguments, "--device", device]
    if not record:
        command.append("--no-record")
    environment = {**os.environ, "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "3000")}
    print(f"$ {' '.join(command[1:])}", flush=True)
    started = time.time()
    completed = subprocess.run(command, capture_output=True, text=True, env=environment)
    if completed.returncode:
        raise SystemExit(f"bench_{name}.py failed ({completed.returncode}):\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    result = _last_json_object(completed.stdout)
    result["wall_seconds"] = round(time.time() - started, 1)
    print(f"  done in {result['wall_seconds']} s", flush=True)
    return result


def _last_json_object(text: str) -> dict[str, Any]:
    """The result the script printed (``json.dumps(..., indent=2)``: starts at a line '{')."""
    lines = text.splitlines()
    for start in range(len(lines) - 1, -1, -1):
        if lines[start] == "{":
            for end in range(start, len(lines)):
                if lines[end] == "}":
                    return json.loads("\n".join(lines[start:end + 1]))
    raise ValueError("the benchmark printed no result")


def markdown(results: list[dict[str, Any]]) -> str:
    from common import speedup

    first = results[0]["machine"]
    lines = [f"# tokbench benchmarks on {first.get('gpu') or first['cpu']}", "",
             f"- date: {results[0]['time']}; commit {first['commit']}; torch {first['torch']}; python {first['python']}",
             f"- CPU: {first['cpu']}, {first['cpu_count']} cores, {first['torch_threads']} torch threads; "
             f"load average before the first benchmark {first['load_average_1min']}",
             f"- device: {first['device']}" + (f" ({first['gpu']}, CUDA {first['cuda']}, TF32 matmul "
                                               f"{first['tf32_matmul']})" if first.get("gpu") else ""),
             "", "Ratio: how many times faster tokbench's path is than the baseline timed in the same process.", ""]
    for result in results:
        lines += [f"## {result['benchmark']}", "", f"settings: `{json.dumps(result['settings'])}` "
                  f"(wall {result.get('wall_seconds', '?')} s)", ""]
        if result["comparisons"]:
            lines += ["| measured | tokbench | baseline | baseline value | ratio |", "|---|---|---|---|---|"]
            for row in result["comparisons"]:
                lines.append(f"| {row['what']} | {row['ours']:.4g} {row['unit']} | {row['baseline']} | "
                             f"{row['baseline_value']:.4g} {row['unit']} | **x{speedup(row):.2f}** |")
            lines.append("")
        figures = result["figures"]
        if "rows" in figures:  # the codec table
            lines += ["| model | precision | batch | encode img/s | decode img/s | peak MB |", "|---|---|---|---|---|---|"]
            lines += [f"| {r['model']} | {r['precision']} | {r['batch']} | {r['encode_img_s']:.3g} | {r['decode_img_s']:.3g} | "
                      f"{r['peak_memory_mb']:.0f} |" for r in figures["rows"]]
        else:
            lines += ["| figure | value |", "|---|---|"]
            lines += [f"| {k} | {v if not isinstance(v, float) else f'{v:.4g}'} |" for k, v in figures.items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--only", default=",".join(SETTINGS), help="comma-separated benchmark names")
    parser.add_argument("--quick", action="store_true", help="tiny settings, nothing appended to results/")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where the summary goes")
    parser.add_argument("--jobs", type=int, default=None,
                        help="benchmarks at a time (default: 1; with --quick, the number of cores)")
    args = parser.parse_args(argv)
    if args.jobs is not None and (args.jobs < 1 or not args.quick and args.jobs != 1):
        raise SystemExit("--jobs: 1 for timed runs (benchmarks side by side distort each other's figures); >= 1 with --quick")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = "quick" if args.quick else ("cuda" if args.device.startswith("cuda") else "cpu")
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; choose from {sorted(SETTINGS)}")
    applicable = [name for name in names if kind in SETTINGS[name]]  # others have no settings for this device kind
    jobs = args.jobs or ((os.cpu_count() or 1) if args.quick else 1)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        results = list(pool.map(lambda name: run(name, SETTINGS[name][kind], args.device, record=not args.quick),
                                applicable))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"SUMMARY-{'quick' if args.quick else kind}"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results) + "\n")
    print(f"summary: {args.out / (stem + '.md')}")


if __name__ == "__main__":
    main()
