"""The ``tokbench`` command line.

Commands that list plugins, validate suites, export tables or inspect the
store import no torch; heavy modules are imported inside the commands that
need them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

# Before torch (and its OpenMP runtime, libgomp) loads: OpenMP threads that wait spin only
# briefly before sleeping. libgomp's default spin (300k iterations) makes small-model training on
# a CPU shared with any other busy process catastrophically slow (tiny-VAE step > 5 s instead of
# 0.06 s, 2 threads, one core busy elsewhere); OMP_WAIT_POLICY=PASSIVE fixes that but doubles the
# step on an idle machine. 3000 keeps idle speed within ~20 % and the shared case at 0.2 s
# (measurements in benchmarks/results/openmp_wait.md). Users override it by setting it themselves.
os.environ.setdefault("GOMP_SPINCOUNT", "3000")

import click  # noqa: E402

from tokbench.errors import TokbenchError  # noqa: E402

OVERRIDE_HELP = "override a suite field, e.g. -o tasks.0.params.num_images=64 (repeatable)"


def _fail(error: Exception) -> None:
    for line in str(error).splitlines() or [type(error).__name__]:
        click.secho(f"error: {line}", fg="red", err=True)
    sys.exit(2)


class _Group(click.Group):
    """Turns TokbenchError (and a full disk) into one-line messages instead of tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TokbenchError as error:
            _fail(error)
        except OSError as error:  # a full disk is one line too: which path, how much space
            from tokbench.storage.store import disk_full_message, is_disk_full

            if not is_disk_full(error):
                raise
            _fail(TokbenchError(disk_full_message(error, Path(error.filename) if error.filename else None)))


@click.group(cls=_Group)
@click.version_option(package_name="tokbench")
def cli() -> None:
    """Benchmark visual tokenizers: understanding, reconstruction, generation."""


def _load(suite_path: str, overrides: tuple[str, ...]):
    from tokbench.config.suite import load_suite

    return load_suite(suite_path, list(overrides))


# ---- validate / plugins --------------------------------------------------------------


@cli.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("-o", "--override", "overrides", multiple=True, help=OVERRIDE_HELP)
@click.option("--show", is_flag=True, help="print the resolved suite (defaults filled in)")
def validate(suite: str, overrides: tuple[str, ...], show: bool) -> None:
    """Check a suite file without running anything."""
    from tokbench.config.suite import suite_to_yaml

    resolved = _load(suite, overrides)
    click.echo(
        f"ok: suite {resolved.name!r}: {len(resolved.datasets)} dataset(s), {len(resolved.tokenizers)} tokenizer(s), "
        f"{len(resolved.tasks)} task(s); digest {resolved.digest()}"
    )
    if show:
        click.echo(suite_to_yaml(resolved))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def plugins(as_json: bool) -> None:
    """List installed plugins, what they register, and any that failed to load."""
    from tokbench.registry.plugins import get_registry

    from tokbench.api import PLUGIN_API_VERSION

    registry = get_registry()

    def describe(item: str) -> str:
        kind, _, name = item.partition(":")
        if kind == "tokenizer" and name in registry.tokenizers:
            return f"{item} [{', '.join(sorted(c.value for c in registry.tokenizers[name].capabilities))}]"
        if kind == "task" and name in registry.tasks:
            needs = sorted(c.value for c in registry.tasks[name].requires)
            return f"{item} (needs {', '.join(needs)})" if needs else item
        return item

    rows = [
        {"name": p.name, "version": p.version, "module": p.module, "source": p.source,
         "status": "error" if p.error else "ok", "error": p.error, "registered": [describe(r) for r in p.registered]}
        for p in registry.plugins
    ]
    if as_json:
        click.echo(json.dumps({"plugin_api": PLUGIN_API_VERSION, "plugins": rows}, indent=2))
        return
    click.echo(f"tokbench plugin API {PLUGIN_API_VERSION}")
    for row in rows:
        click.echo(f"{row['name']} {row['version']} [{row['source']}]: {row['status']}")
        if row["error"]:
            click.secho(f"    {row['error']}", fg="red")
        for item in row["registered"]:
            click.echo(f"    {item}")


@cli.group()
def plugin() -> None:
    """Write your own plugin."""


@plugin.command("new")
@click.argument("name")
@click.option("--dir", "directory", default=".", show_default=True, type=click.Path(file_okay=False),
              help="where to create tokbench-NAME/")
@click.option("--force", is_flag=True, help="write into an existing, non-empty folder")
def plugin_new(name: str, directory: str, force: bool) -> None:
    """Scaffold an installable tokenizer plugin package tokbench-NAME (see docs/write-a-plugin.md)."""
    from tokbench.cli.scaffold import scaffold

    written = scaffold(name, directory, force=force)
    root = written[0].parent
    click.echo(f"created {root}")
    for path in written:
        click.echo(f"  {path.relative_to(root)}")
    click.echo(f"next: pip install -e {root} && tokbench plugins && python -m pytest {root / 'tests'} "
               f"&& tokbench run {root / 'suites' / (name + '.yaml')}")


# ---- run / status ------------------------------------------------------------------


@cli.command()
@click.argument("suite", type=click.Path(dir_okay=False))
@click.option("-o", "--override", "overrides", multiple=True, help=OVERRIDE_HELP)
@click.option("--backend", type=click.Choice(["debug", "local", "slurm"]), help="override launcher.backend")
@click.option("--store", "store_root", type=click.Path(file_okay=False), help="override store.root")
@click.option("--dry-run", is_flag=True, help="list each unit as cached, to run or stale (code changed, with the reason); run nothing")
@click.option("--no-progress", is_flag=True, help="no progress bars")
@click.option("--wait", "wait_", is_flag=True, help="slurm: stay until every job ended, then print the results")
@click.option("--recompute", "recompute", multiple=True, metavar="TOKENIZER|TASK|all",
              help="rerun these units even when stored (a tokenizer or task of the suite, or all; repeatable); "
                   "the results they replace move to <store>/replaced/")
def run(suite: str, overrides: tuple[str, ...], backend: str | None, store_root: str | None, dry_run: bool, no_progress: bool,
        wait_: bool, recompute: tuple[str, ...]) -> None:
    """Run a suite: every unit not already in the store, then print the results.

    A unit whose stored result came from other code (a plugin's source files or version
    changed) is stale: it runs again, and the reason is printed.

    With the slurm backend it submits what is ready (job arrays, afterok dependencies) and
    returns; `tokbench status` follows the jobs, `--wait` stays until they end, and running
    it again submits only what is neither in the store nor queued.
    """
    from tokbench.execution import freshness
    from tokbench.execution.launch.executors import describe_backend, launch
    from tokbench.execution.planner import plan_suite
    from tokbench.execution.runner import create_run, store_for

    extra = list(overrides)
    if backend:
        extra.append(f"launcher.backend={backend}")
    if store_root:
        extra.append(f"store.root={store_root}")
    resolved = _load(suite, tuple(extra))
    store = store_for(resolved)
    started = time.time()
    plan = plan_suite(resolved)
    states = freshness.classify(store, plan)
    forced = {u.key for u in freshness.select(plan, resolved, recompute)} if recompute else set()
    for key in forced:
        if states[key].state == "cached":
            states[key] = freshness.Freshness("recompute", "asked for with --recompute")
    counts = {state: sum(f.state == state for f in states.values()) for state in ("cached", "stale", "recompute")}
    click.echo(
        f"suite {resolved.name!r}: {len(plan.units)} unit(s), {counts['cached']} already in the store at {store.root}"
        + (f", {counts['stale']} stale (code changed)" if counts["stale"] else "")
        + (f", {counts['recompute']} to recompute" if counts["recompute"] else "")
        + f"; backend {describe_backend(resolved.launcher)}"
    )
    for unit in plan.units:
        state = states[unit.key]
        if dry_run:
            click.echo(f"  [{state.state}] {unit.label} ({unit.key}){': ' + state.reason if state.reason else ''}")
        elif state.state == "stale":
            click.secho(f"  stale   {unit.label}: {state.reason}; running it again", fg="yellow")
    if dry_run:
        return
    for unit in plan.units:
        if states[unit.key].state == "recompute":
            previous = store.get_result(unit.key)
            moved = freshness.retire(store, unit.key)
            run_name = (previous.get("suite") or {}).get("run", "an earlier run")
            click.echo(f"  replacing {unit.label}: the result of {run_name} moved to {moved}")
    run_dir = create_run(store, resolved, plan, suite)

    headline = _unit_headline(store, resolved.report)

    def report(outcome) -> None:
        colour = {"done": "green", "cached": None, "failed": "red", "skipped": "yellow"}[outcome.status]
        timing = f" in {outcome.seconds:.1f}s" if outcome.status == "done" else ""
        result = headline(outcome.key) if outcome.status == "done" else ""
        click.secho(f"  {outcome.status:7s} {outcome.label}{timing}{': ' + result if result else ''}", fg=colour)
        if outcome.error:
            click.secho(f"          {outcome.error}", fg=colour, err=True)

    if resolved.launcher.backend == "slurm":
        from tokbench.execution.launch import slurm

        submitted = slurm.submit(plan, run_dir, store, resolved)
        ids = sorted({slurm_job.split("_")[0] for slurm_job in submitted.submitted.values()}, key=int)
        click.echo(f"submitted {len(submitted.submitted)} unit(s) in {submitted.seconds:.2f}s"
                   f"{' as job(s) ' + ', '.join(ids) if ids else ''}; {len(submitted.queued)} already queued, "
                   f"{len(submitted.cached)} in the store")
        if not wait_:
            click.echo(f"run {run_dir.name}: follow it with `tokbench status --store {store.root}`, "
                       "stop it with `tokbench cancel`")
            return
        outcomes = slurm.wait(plan, store, report=report, cached=set(submitted.cached))
    else:
        outcomes = launch(plan, run_dir, store, resolved.launcher, report=report, progress=not no_progress)
    click.echo(f"run {run_dir.name} finished in {time.time() - started:.1f}s")
    _print_results(store, [u.key for u in plan.units], resolved)
    failed = [o for o in outcomes if o.status in ("failed", "skipped")]
    if failed:
        click.secho(f"{len(failed)} unit(s) did not complete; logs: {run_dir / 'units'}", fg="red", err=True)
        sys.exit(1)


def _unit_headline(store, report_config):
    """``key -> text``: a finished unit's headline metrics with the leaderboard's intervals
    (``tokbench.report.unit_summary``); the first line says what the intervals are. Empty for a
    unit that stored no result (a tokenizer's training) or whose record cannot be read: the
    leaderboard at the end shows everything."""
    verdicts = None  # built at the first finished result: a rerun with everything stored never pays its imports
    explained = False

    def headline(key: str) -> str:
        nonlocal explained, verdicts
        try:
            from tokbench.report.unit_summary import headline_metrics, summary
            from tokbench.report.verdicts import Verdicts

            record = store.get_result(key) if store.has_result(key) else {}
            if not headline_metrics(record, report_config):  # a tokenizer's training: no numbers to show
                return ""
            verdicts = verdicts or Verdicts.from_config(store, report_config)
            text = summary(record, verdicts, report_config)
        except Exception as error:  # a display line must never stop the run; the leaderboard says more
            return f"(headline unavailable: {error})"
        if text and not explained:
            explained = True
            text += f"  (± {report_config.confidence:.0%} interval)"
        return text

    return headline


def _print_results(store, keys: list[str], suite) -> None:
    """The run's tables on stdout, then its leaderboard (every format, plots) on disk; when
    nothing changed since the last run, what it printed and the folder it wrote."""
    from tokbench.report.unchanged import leaderboard_digest, mark, unchanged

    records = [store.get_result(k) for k in keys if store.has_result(k)]
    if any(r.get("details", {}).get("ladder") for r in records):  # budget ladders: their rung records too
        units = {r.get("key") for r in records}
        records += [r for r in store.results() if r.get("type") == "rung" and r.get("part_of") in units]
    directory = store.root / "leaderboards" / suite.name
    digest = leaderboard_digest(records, suite.report, suite.report.formats)
    kept = unchanged(directory, digest)
    if kept is not None:
        written, printed = kept
        click.echo(printed)
    else:
        written, printed = _write_results(store, records, directory, suite)
        if written:
            mark(directory, digest, written, printed)
    if written:
        plots = sum(name.startswith("plot:") for name in written) // 2  # PNG + SVG each
        where = written.get("html") or next(iter(written.values()))
        click.echo(f"leaderboard: {where} ({', '.join(sorted(k for k in written if not k.startswith('plot:')))}"
                   f"{f', {plots} plots' if plots else ''}{'; unchanged since the last run' if kept else ''})")


def _write_results(store, records, directory: Path, suite) -> tuple[dict[str, Path], str]:
    """Print the tables, write the leaderboard; (files written, text printed)."""
    from tokbench.report.exporters.text import markdown_table, shared_legend
    from tokbench.report.report import build_report, write_leaderboard
    from tokbench.report.tables import ComparabilityError

    try:
        report = build_report(records, specs=suite.report.tables, title=f"tokbench leaderboard: {suite.name}",
                              store=store, plots=suite.report.plots, settings=suite.report)
    except ComparabilityError as error:  # the units of one plan share protocols; a custom table may not
        click.secho(str(error), fg="yellow", err=True)
        return {}, ""
    # the legend once, after the tables: six copies of the same paragraph bury the numbers
    lines = [("\n" if index else "") + markdown_table(table, legend=False) for index, table in enumerate(report.tables)]
    legend = shared_legend(report.tables)
    lines += ["", *legend] if legend else []
    lines += _unavailable_notes(records)
    if report.predictions:  # budget ladders: predictions, apart from the measured tables
        lines.append("\n" + report.predictions)
    printed = "\n".join(lines)
    click.echo(printed)
    if not report.tables:
        return {}, printed
    return write_leaderboard(report, directory, suite.report.formats), printed


def _unavailable_notes(records) -> list[str]:
    notes = {}
    for record in records:
        for metric, reason in record.get("unavailable", {}).items():
            notes.setdefault(f"{metric}: {reason}", None)
    return [f"n/a {note}" for note in notes]


def _open_run(store_root: str | None, run_name: str | None):
    from tokbench.execution.runner import latest_run, load_run
    from tokbench.storage.store import Store, default_store_root

    store = Store(store_root or default_store_root())
    run_dir = store.root / "runs" / run_name if run_name else latest_run(store)
    if run_dir is None or not run_dir.exists():
        raise TokbenchError(f"no run found in {store.root / 'runs'}; start one with `tokbench run SUITE`")
    suite, plan, _ = load_run(run_dir)
    return store, run_dir, suite, plan


_run_options = [
    click.option("--store", "store_root", type=click.Path(file_okay=False), help="store directory"),
    click.option("--run", "run_name", help="run name (default: the latest run)"),
]


def _with_run_options(function):
    for option in reversed(_run_options):
        function = option(function)
    return function


@cli.command()
@_with_run_options
def status(store_root: str | None, run_name: str | None) -> None:
    """Show the units of a run and their state (done, running, failed, dead, pending; Slurm job states)."""
    from tokbench.execution.runner import unit_state, unit_status

    store, run_dir, suite, plan = _open_run(store_root, run_name)
    counts: dict[str, int] = {}
    click.echo(f"run {run_dir.name}")
    if suite.launcher.backend == "slurm":
        from tokbench.execution.launch.slurm import unit_states

        states = unit_states(plan, store)  # one squeue/sacct round for the whole run
        for unit in plan.units:
            state, job, error = states[unit.key]
            counts[state] = counts.get(state, 0) + 1
            click.echo(f"  {state:13s} {unit.label}{f'  (job {job})' if job else ''}")
            if error:
                for line in error.splitlines()[:6]:
                    click.secho(f"                {line}", fg="red")
    else:
        for unit in plan.units:
            state = unit_state(store, run_dir, unit)
            counts[state] = counts.get(state, 0) + 1
            click.echo(f"  {state:8s} {unit.label}")
            if state == "failed":
                click.secho(f"           {unit_status(run_dir, unit.key).get('error')}", fg="red")
            elif state == "dead":
                info = unit_status(run_dir, unit.key)
                click.secho(f"           process {info.get('pid')} on {info.get('host', '?')} ended without recording an "
                            "outcome (killed?); `tokbench run` again resumes it", fg="yellow")
    click.echo(", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    _print_timings(store, plan)


def _print_timings(store, plan) -> None:
    """Wall time by phase of the plan's finished units, slowest first (``tokbench.report.timings``)."""
    from tokbench.report.timings import timing_table

    table = timing_table((store.get_result(u.key) for u in plan.units if store.has_result(u.key)), limit=12)
    if table:
        click.echo(f"\ntime by phase, slowest units first:\n{table}")


@cli.command()
@_with_run_options
def cancel(store_root: str | None, run_name: str | None) -> None:
    """Cancel the queued and running Slurm jobs of a run (results already in the store stay)."""
    from tokbench.execution.launch.slurm import cancel as cancel_jobs

    store, run_dir, suite, plan = _open_run(store_root, run_name)
    if suite.launcher.backend != "slurm":
        raise TokbenchError(f"run {run_dir.name} used the {suite.launcher.backend} backend; only Slurm jobs can be cancelled")
    cancelled = cancel_jobs(plan, store)
    click.echo(f"cancelled {len(cancelled)} job(s){': ' + ', '.join(cancelled) if cancelled else ''}")


# ---- export ------------------------------------------------------------------------


def _suite_report(store, suite_name: str | None):
    """The ``report:`` section of the latest run of ``suite_name`` (defaults without one)."""
    from tokbench.config.suite import ReportConfig

    if suite_name is None:
        return ReportConfig()
    import yaml

    runs = sorted((store.root / "runs").glob(f"*-{suite_name}-*/suite.resolved.yaml"))
    if not runs:
        return ReportConfig()
    data = yaml.safe_load(runs[-1].read_text()) or {}
    return ReportConfig.model_validate(data.get("report") or {})


_mixing_option = click.option("--allow-mixing", is_flag=True,
                              help="merge results of different protocols/evaluators in one column, with footnotes")
_versions_option = click.option("--all-versions", is_flag=True,
                                help="also show results of earlier plugin code or versions (and replaced ones), "
                                     "as separate rows labelled with their version and code digest")


def _shown_results(store, all_versions: bool) -> list:
    """The store's results of the installed code (or every version, labelled); says on stderr
    how many earlier ones it left out."""
    from tokbench.execution.freshness import replaced_results
    from tokbench.report.current import labelled_replaced, select_versions

    shown, hidden = select_versions(store.results(), all_versions=all_versions)
    if all_versions:
        shown += labelled_replaced(replaced_results(store))
    if hidden:
        click.secho(f"note: {len(hidden)} result(s) of earlier plugin code or versions left out "
                    f"(e.g. {hidden[0][1]}); --all-versions shows them as separate rows", fg="yellow", err=True)
    return shown


@cli.command()
@click.option("--store", "store_root", type=click.Path(file_okay=False), help="store directory")
@click.option("--format", "fmt", default="markdown", show_default=True,
              help="exporter: markdown, latex, csv, json, html (and any a plugin adds; see `tokbench plugins`)")
@click.option("--suite", "suite_name", help="only results of this suite name (and its report tables)")
@click.option("--output", "-O", type=click.Path(dir_okay=False), help="write to a file instead of stdout")
@_mixing_option
@_versions_option
def export(store_root: str | None, fmt: str, suite_name: str | None, output: str | None, allow_mixing: bool,
           all_versions: bool) -> None:
    """Export the results in the store as leaderboard tables (refuses to mix protocols; results
    of the installed plugin code only, unless --all-versions)."""
    from tokbench.registry.plugins import get_registry, resolve
    from tokbench.report.report import build_report
    from tokbench.storage.store import Store, default_store_root

    store = Store(store_root or default_store_root())
    exporter = resolve(get_registry().get("exporters", fmt).exporter)
    report = build_report(_shown_results(store, all_versions), suite=suite_name, specs=_suite_report(store, suite_name).tables, settings=_suite_report(store, suite_name),
                          allow_mixing=allow_mixing, store=store, plots=fmt == "html",
                          title=f"tokbench leaderboard: {suite_name}" if suite_name else None)
    text = exporter(report)
    if output:
        Path(output).write_text(text if text.endswith("\n") else text + "\n")
        click.echo(f"wrote {output}")
    else:
        click.echo(text.rstrip("\n"))


@cli.command()
@click.option("--store", "store_root", type=click.Path(file_okay=False), help="store directory")
@click.option("--suite", "suite_name", help="only results of this suite name (and its report tables)")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="folder (default: <store>/leaderboards/<suite|all>)")
@_mixing_option
@_versions_option
def report(store_root: str | None, suite_name: str | None, out_dir: str | None, allow_mixing: bool,
           all_versions: bool) -> None:
    """Write the full leaderboard: Markdown, LaTeX, CSV, JSON, HTML and the plots (results of the
    installed plugin code; --all-versions adds earlier ones as labelled rows, in
    <store>/leaderboards/<suite>-all-versions unless --out says otherwise)."""
    from tokbench.report.report import build_report, write_leaderboard
    from tokbench.storage.store import Store, default_store_root

    store = Store(store_root or default_store_root())
    built = build_report(_shown_results(store, all_versions), suite=suite_name, specs=_suite_report(store, suite_name).tables, settings=_suite_report(store, suite_name),
                         allow_mixing=allow_mixing, store=store, plots=True,
                         title=f"tokbench leaderboard: {suite_name}" if suite_name else None)
    if not built.tables:
        raise TokbenchError(f"no results{f' of suite {suite_name!r}' if suite_name else ''} in the store at {store.root}")
    directory = Path(out_dir) if out_dir else (
        store.root / "leaderboards" / f"{suite_name or 'all'}{'-all-versions' if all_versions else ''}")
    written = write_leaderboard(built, directory)
    for name, path in written.items():
        click.echo(f"{name:28s} {path}")
    for name, why in built.skipped_plots.items():
        click.echo(f"plot {name} not drawn: {why}")


# ---- store maintenance --------------------------------------------------------------


@cli.group()
def store() -> None:
    """Inspect and maintain the content-addressed store."""


_store_option = click.option("--store", "store_root", type=click.Path(file_okay=False), help="store directory")


def _open_store(store_root: str | None):
    from tokbench.storage.store import Store, default_store_root

    root = Path(store_root) if store_root else default_store_root()
    if not root.exists():
        raise TokbenchError(f"no store at {root}; run a suite first or pass --store")
    return Store(root)


@store.command("ls")
@_store_option
def store_ls(store_root: str | None) -> None:
    """List artifacts and results."""
    opened = _open_store(store_root)
    for artifact in opened.artifacts():
        label = artifact.get("meta", {}).get("label", "")
        click.echo(f"{artifact['key']}  {artifact['kind']:28s} {artifact['size'] / 1e6:9.2f} MB  {label}")
    for record in opened.results():
        click.echo(f"{record['key']}  {'result:' + record.get('type', '?'):28s} {'':12s}  {record.get('label', '')}")


def _verify(store_root: str | None, fix: bool) -> None:
    opened = _open_store(store_root)
    report = opened.verify()
    for problem in report.problems:
        click.secho(problem, fg="red")
    for warning in report.warnings:
        click.secho(f"warning: {warning}", fg="yellow")
    click.echo(f"checked {report.checked} entries (artifacts, records, partial shards and checkpoints): "
               f"{'ok' if report.ok else f'{len(report.problems)} problem(s)'}")
    if fix and not report.ok:
        moved = opened.repair(report)
        click.echo(f"moved {len(moved)} damaged entr{'y' if len(moved) == 1 else 'ies'} to {opened.root / 'quarantine'}; "
                   "the next run recomputes them")
        if len(moved) == len(report.damaged):
            return
    if not report.ok:
        if not fix:
            click.echo("`tokbench store repair` moves them to quarantine/ so the next run recomputes them")
        sys.exit(1)


@store.command("verify")
@_store_option
@click.option("--fix", is_flag=True, help="move damaged entries to quarantine/ (as `store repair`)")
def store_verify(store_root: str | None, fix: bool) -> None:
    """Re-hash every artifact, result record and partial shard; exit 1 on any problem."""
    _verify(store_root, fix)


@store.command("repair")
@_store_option
def store_repair(store_root: str | None) -> None:
    """Verify, and move every damaged entry to quarantine/ so the next run recomputes it."""
    _verify(store_root, True)


@store.command("gc")
@_store_option
@click.option("--dry-run", is_flag=True)
@click.option("--unreferenced", is_flag=True, help="also remove artifacts that no result lists as an input or output")
@click.option("--older-than", "older_than", type=float, default=7.0, show_default=True,
              help="days without change after which unheld partial/ work and quarantined entries are removed")
@click.option("--keep-legacy", is_flag=True, help="--unreferenced with records that do not list their inputs: keep "
              "every artifact as old as they are")
def store_gc(store_root: str | None, dry_run: bool, unreferenced: bool, older_than: float, keep_legacy: bool) -> None:
    """Remove leftovers of interrupted work (never what a live run holds) and optionally unreferenced artifacts."""
    removed = _open_store(store_root).gc(dry_run=dry_run, unreferenced=unreferenced, older_than_days=older_than,
                                         keep_legacy=keep_legacy)
    for path in removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {path}")
    click.echo(f"{len(removed)} item(s)")


def _add_plugin_commands() -> None:
    from tokbench.registry.plugins import get_registry

    registry = get_registry()
    for name in [p.name for p in registry.plugins if not p.error]:
        plugin = registry.manager.get_plugin(name)
        for impl in registry.manager.hook.tokbench_register_commands.get_hookimpls():
            if impl.plugin is plugin:
                try:
                    impl.function(cli=cli)
                except Exception as error:  # a broken plugin never breaks the CLI
                    click.secho(f"warning: plugin {name} failed to add commands: {error}", fg="yellow", err=True)


def main(argv: list[str] | None = None) -> None:
    _add_plugin_commands()
    cli.main(args=argv, prog_name="tokbench")


if __name__ == "__main__":  # pragma: no cover
    main()
