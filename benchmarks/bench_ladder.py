"""Budget ladders on CPU: what evaluating the rungs costs next to training, how well the rungs
predict the held-out full budget over seeds, and the training FLOPs successive halving saves.

    .venv/bin/python benchmarks/bench_ladder.py                       # suites/ladder.yaml, seeds 0 and 1 (about an hour on 2 busy cores)
    .venv/bin/python benchmarks/bench_ladder.py --store /tmp/s --seeds 0 --no-record
    .venv/bin/python benchmarks/bench_ladder.py --quick --no-record   # a seconds-long ladder: checks the script
    .venv/bin/python benchmarks/bench_ladder.py --rescore STORE [STORE ...]   # held out again from stored rungs, no training

For each seed, ``suites/ladder.yaml`` with that generator seed (suite ``ladder-seed<N>``) runs into
one store (the evaluation dataset's reference features are shared). Figures:

* overhead: per unit, the seconds of the rungs' sampling and scoring ("sampling (rung)",
  "scoring (rung)") over the seconds of generator training (``tokbench.runtime.timing`` phases);
* held out: each tokenizer's gFID at the full budget predicted from the rungs below it, against
  the measured full-budget gFID (absolute and relative error, inside the interval or not), and
  whether the predicted ranking of the tokenizers was the measured one, with its probability;
* ``--rescore``: the held-out figures (and the halving decisions replayed) from the rung records
  already in one or more stores, with the current fit and intervals, training nothing;
* successive halving: the first seed's suite again with ``ladder_stop: {probability: P}`` (suite
  ``ladder-halving``; its snapshots and samples are already in the store, so it only decides)
  and the training FLOPs its stopped generators did not spend, over the FLOPs of the full runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUICK = {"num_images": {"shapes-val": 24, "shapes-train": 64}, "training_flops": 1.2e11, "num_samples": 24}


def suite_variant(base: dict, name: str, seed: int, stop: float | None, quick: bool) -> dict:
    suite = json.loads(json.dumps(base))
    suite["name"] = name
    suite.pop("store", None)
    params = suite["tasks"][0]["params"]
    params["seed"] = seed
    if stop is not None:
        params["ladder_stop"] = {"probability": stop}
    if quick:
        for dataset, count in QUICK["num_images"].items():
            suite["datasets"][dataset]["params"]["num_images"] = count
        params.update(training_flops=QUICK["training_flops"], num_samples=QUICK["num_samples"], batch_size=8)
    return suite


def run(suite: dict, store: Path, directory: Path) -> None:
    path = directory / f"{suite['name']}.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    subprocess.run([sys.executable, "-m", "tokbench.cli.main", "run", str(path), "--store", str(store)], check=True,
                   cwd=REPO, stdout=subprocess.DEVNULL)


def overhead(records: list[dict]) -> dict:
    training = rungs = full_eval = 0.0
    for r in records:
        if r.get("type") != "result" or r.get("task", {}).get("kind") != "generation":
            continue
        seconds = (r.get("timings") or {}).get("phases", {})
        training += seconds.get("generator training", 0.0)
        rungs += seconds.get("sampling (rung)", 0.0) + seconds.get("scoring (rung)", 0.0)
        full_eval += seconds.get("sampling", 0.0) + seconds.get("scoring", 0.0)
    return {"training_s": training, "rung_eval_s": rungs, "full_eval_s": full_eval,
            "rung_eval_over_training": rungs / training if training else None}


def held_out(records: list[dict], store) -> dict:
    from tokbench.report.ladders import ladder_groups

    rows, rankings = [], []
    for group in ladder_groups(records, store):
        measured = {l.tokenizer: l.full.value for l in group.ladders if l.full is not None}
        for name, prediction in group.predictions.items():
            if name in measured:
                truth = measured[name]
                rows.append({"seed": group.seed, "tokenizer": name, "model": prediction.fit.model, "rungs": prediction.rungs,
                             "extrapolation": prediction.extrapolation,
                             "model_error_per_ln_flops": prediction.model_error.scale, "model_error_dof": prediction.model_error.dof,
                             "predicted": prediction.value, "low": prediction.interval.low, "high": prediction.interval.high,
                             "measured": truth, "error": prediction.value - truth,
                             "relative_error": (prediction.value - truth) / truth,
                             "inside": prediction.interval.low <= truth <= prediction.interval.high,
                             "rung_values": [round(p.value, 2) for p in group.points[name]]})
        if len(measured) == len(group.predictions) > 1:
            actual = sorted(measured, key=measured.get)
            rankings.append({"seed": group.seed, "predicted": group.ranking, "measured": actual,
                             "held": group.ranking == actual, "probability": group.probability})
    errors = [abs(row["error"]) for row in rows]
    summary = {"mean_abs_error": sum(errors) / len(errors) if errors else None,
               "mean_abs_relative_error": sum(abs(r["relative_error"]) for r in rows) / len(rows) if rows else None,
               "covered": sum(r["inside"] for r in rows), "predictions": len(rows),
               "rankings_held": sum(r["held"] for r in rankings), "rankings": len(rankings)}
    return {"summary": summary, "predictions": rows, "rankings": rankings}


def replay_halving(records: list[dict], store, threshold: float) -> list[dict]:
    """The successive-halving decisions the current rule takes on stored plain ladders: the
    tokenizers of each seed in the order their units ran, each judged at every rung against the
    ones before it (as on one machine), and where it would have stopped."""
    from tokbench.ladders.data import collect, engine_for
    from tokbench.ladders.halving import decide_among

    engine, replayed, by_seed = engine_for(store), [], {}
    started = {r.get("part_of"): (r.get("provenance") or {}).get("started", 0) for r in records if r.get("type") == "rung"}
    for ladder in collect(records):
        by_seed.setdefault(ladder.seed, []).append(ladder)
    for seed, ladders in sorted(by_seed.items(), key=lambda item: item[0] or 0):
        ladders.sort(key=lambda l: started.get(l.unit, 0))
        for index, me in enumerate(ladders[1:], 1):
            decisions = []
            for count in range(1, len(me.rungs) + 1):
                rivals = {l.tokenizer: l.rungs[:count] for l in ladders[:index]}
                decision = decide_among(engine, me.tokenizer, me.rungs[:count], rivals, threshold, me.budget)
                decisions.append({"rung": me.rungs[count - 1].fraction, "stop": decision.stop,
                                  "probability_worse": decision.probability_worse, "leader": decision.leader})
                if decision.stop:
                    break
            replayed.append({"seed": seed, "tokenizer": me.tokenizer, "decisions": decisions,
                             "measured_full": me.full.value if me.full else None})
    return replayed


def halving(records: list[dict]) -> dict:
    spent = saved = 0.0
    stopped = []
    for r in records:
        if r.get("type") != "result":
            continue
        stop = r.get("details", {}).get("ladder_stop") or {}
        if stop.get("stopped"):
            spent += stop["flops_spent"]
            saved += stop["flops_saved"]
            stopped.append({"tokenizer": r["tokenizer"]["name"], "rung": stop["rung"], "reason": stop["reason"]})
        else:
            spent += r.get("details", {}).get("generator_training_flops", 0.0)
    return {"flops_spent": spent, "flops_saved": saved, "saved_fraction": saved / (spent + saved) if spent + saved else 0.0,
            "stopped": stopped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", type=Path, default=None, help="store to run into (default: a fresh temporary one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--stop", type=float, default=0.95, help="ladder_stop probability of the halving run")
    parser.add_argument("--quick", action="store_true", help="tiny datasets and budget: checks the script only")
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--rescore", type=Path, nargs="+", default=None, metavar="STORE",
                        help="score the held-out predictions again from the rung records in these stores (no training)")
    args = parser.parse_args()
    if args.rescore:
        return rescore(args)

    from tokbench.storage.store import Store

    base = yaml.safe_load((REPO / "suites" / "ladder.yaml").read_text())
    with tempfile.TemporaryDirectory() as scratch:
        store_path = args.store or Path(scratch) / "store"
        for seed in args.seeds:
            run(suite_variant(base, f"ladder-seed{seed}", seed, None, args.quick), store_path, Path(scratch))
        run(suite_variant(base, "ladder-halving", args.seeds[0], args.stop, args.quick), store_path, Path(scratch))
        store = Store(store_path)
        generation = [r for r in store.results() if r.get("task", {}).get("kind") == "generation"]
        # a unit is keyed by what it computes, not by its suite's name: select by parameters
        plain = [r for r in generation if r["task"]["params"].get("seed") in args.seeds and not r["task"]["params"].get("ladder_stop")]
        stopped = [r for r in generation if r["task"]["params"].get("seed") == args.seeds[0] and r["task"]["params"].get("ladder_stop")]
        figures = {"overhead": overhead(plain), "held_out": held_out(plain, store), "halving": halving(stopped)}
    record("ladder", {"seeds": args.seeds, "stop": args.stop, "quick": args.quick}, figures, [], "cpu",
           save=not args.no_record)


def rescore(args) -> None:
    from tokbench.storage.store import Store

    figures = []
    for path in args.rescore:
        store = Store(path)
        plain = [r for r in store.results()
                 if r.get("task", {}).get("kind") == "generation" and not r["task"]["params"].get("ladder_stop")]
        figures.append({"store": str(path), "held_out": held_out(plain, store),
                        "halving_replayed": replay_halving(plain, store, args.stop)})
    record("ladder-rescore", {"stores": [str(p) for p in args.rescore], "stop": args.stop}, {"stores": figures}, [], "cpu",
           save=not args.no_record)


if __name__ == "__main__":
    main()
