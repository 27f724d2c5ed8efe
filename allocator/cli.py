"""The command line: parses arguments and calls the API; nothing else lives here.

Exit codes, the same for every command:
    0 done, 2 bad input or usage, 3 infeasible, 4 no solution within the limits,
    130 interrupted (Ctrl-C), 1 a bug.
A traceback is shown only with --debug. On a terminal, long commands show a live progress
display on stderr (allocator.progress); --quiet hides it.
"""

from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path

import click
from rich.console import Console

from allocator import display
from allocator.errors import AllocatorError, InputError, ModelTooLargeError

EXIT_OK, EXIT_BUG, EXIT_INPUT, EXIT_INFEASIBLE, EXIT_NO_SOLUTION = 0, 1, 2, 3, 4
EXIT_INTERRUPTED = 130

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class ExitWith(Exception):
    """Raised by a command to end with a given exit code after printing its output."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def guarded(fn):
    """Map errors to exit codes and messages; tracebacks only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = bool(click.get_current_context().find_root().params.get("debug"))
        try:
            return fn(*args, **kwargs)
        except ExitWith as e:
            sys.exit(e.code)
        except InputError as e:
            if debug:
                traceback.print_exc()
            # one problem per line, never hard-wrapped: users grep and copy these lines
            err_console.print(str(e), markup=False, soft_wrap=True)
            sys.exit(EXIT_INPUT)
        except ModelTooLargeError as e:
            err_console.print(f"error: {e}", markup=False)
            sys.exit(EXIT_INPUT)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            sys.exit(EXIT_INTERRUPTED)
        except (AllocatorError, Exception) as e:  # a bug: say so, exit 1
            if debug:
                traceback.print_exc()
            err_console.print(
                f"internal error: {type(e).__name__}: {e}\n"
                "this is a bug in allocator; re-run with --debug for the traceback",
                markup=False,
            )
            sys.exit(EXIT_BUG)

    return wrapper


def loads_instance(fn):
    """``--allow-outside-paths`` for a command that loads an instance: its CSV tables and
    profiles_dir may then lie outside the instance's folder (refused by default)."""

    @click.option("--allow-outside-paths", "allow_outside_paths", is_flag=True,
                  help="Let the instance reference tables and profiles outside its own folder.")
    @functools.wraps(fn)
    def wrapper(*args, allow_outside_paths: bool = False, **kwargs):
        from allocator.io import outside_paths_allowed

        with outside_paths_allowed(allow_outside_paths):
            return fn(*args, **kwargs)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.version_option(package_name="allocator")
def main(debug: bool) -> None:
    """allocator: where and when AI workloads run across leased data centers."""


# Commands are registered below, one per stage of the flow. Each command only parses its
# arguments, calls the API and renders what it returns.


# --- sweep ---
@main.command("sweep")
@click.argument("instance", type=click.Path(dir_okay=True, path_type=str))
@click.argument("spec", type=click.Path(dir_okay=False, path_type=str))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder for results and per-scenario schedules (re-use it to resume).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local worker processes (default: number of CPUs; 1 runs in this process).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run on a Dask cluster, e.g. tcp://10.0.0.5:8786.")
@click.option("--connect-timeout", "connect_timeout", type=click.FloatRange(min=0, min_open=True),
              default=5.0, show_default=True, metavar="S",
              help="Seconds to wait for the --scheduler before giving up (exit 2).")
@click.option("--force", is_flag=True, help="Use an --out holding results or a sweep.json of "
              "another spec, or not written by a sweep (its results files are replaced).")
@click.option("--plot", is_flag=True, help="Also write PNG figures into OUT/plots/.")
@click.option("--retry-failed", is_flag=True, help="Re-run scenarios recorded with status error.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary table.")
@loads_instance
@guarded
def sweep_cmd(instance, spec, out, workers, scheduler, connect_timeout, force, plot, retry_failed,
              quiet):
    """Solve every scenario of SPEC (a sweep YAML) on INSTANCE; resumable."""
    from allocator.sweep import plot_sweep, summarize, sweep

    try:
        df = sweep(instance, spec, out=out, workers=workers, scheduler=scheduler,
                   progress=False if quiet else None, retry_failed=retry_failed, force=force,
                   connect_timeout=connect_timeout)
    except KeyboardInterrupt:
        err_console.print(f"interrupted: finished scenarios are kept in {out}; the same command "
                          "resumes the sweep", markup=False, soft_wrap=True)
        raise ExitWith(EXIT_INTERRUPTED) from None
    counts = summarize(df)
    failed = sum(n for s, n in counts.items() if s not in ("optimal", "feasible"))
    files = plot_sweep(out) if plot else []
    if not quiet:
        from rich.table import Table

        table = Table(title=f"sweep: {len(df)} scenarios", show_header=True)
        table.add_column("status")
        table.add_column("scenarios", justify="right")
        for status, n in sorted(counts.items()):
            table.add_row(status, str(n))
        console.print(table)
        ok = df[df["status"].isin(["optimal", "feasible"])]
        if len(ok):
            console.print(f"objective from {display.fixed(ok['objective'].min())} to "
                          f"{display.fixed(ok['objective'].max())}")
    if failed:
        console.print(f"{failed} of {len(df)} scenarios have no schedule; see the status and "
                      f"error columns of {out}/results.csv", soft_wrap=True, markup=False)
    console.print(f"results: {out}/results.parquet, {out}/results.csv", soft_wrap=True, markup=False)
    for f in files:
        console.print(f"figure: {f}", soft_wrap=True, markup=False)
    raise ExitWith(EXIT_OK)


# --- plot-sweep ---
@main.command("plot-sweep")
@click.argument("folder", type=click.Path(file_okay=False, path_type=str))
@guarded
def plot_sweep_cmd(folder):
    """PNG figures of a sweep's results against each parameter, into FOLDER/plots/."""
    from allocator.results import check_writable
    from allocator.sweep import plot_sweep

    check_writable(f"{folder}/plots", folder=True, option="FOLDER")
    for f in plot_sweep(folder):
        console.print(f"figure: {f}", soft_wrap=True, markup=False)
    raise ExitWith(EXIT_OK)


# --- validate ---
@main.command("validate")
@click.argument("instance", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print the summary and problems as JSON.")
@click.option("--profiles", "profiles_dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Folder of AI model profiles (default: the nearest models/ above the instance).")
@loads_instance
@guarded
def validate_cmd(instance, as_json, profiles_dir):
    """Check INSTANCE and print what it holds (exit 0), or every problem found (exit 2)."""
    import json

    from allocator.errors import describe_problems, format_problems
    from allocator.validate import errors, summary, validate_path, warnings

    inst, problems = validate_path(instance, profiles_dir=profiles_dir)
    errs, warns = errors(problems), warnings(problems)
    if as_json:
        def rows(ps):  # "train-3 [jobs.csv row 3]" -> id "train-3", where "jobs.csv row 3"
            out = []
            for p in ps:
                ident, _, where = p.id.partition(" [") if p.id.endswith("]") else (p.id, "", "")
                out.append({"rule": p.rule, "entity": p.entity, "id": ident, "where": where.rstrip("]"),
                            "message": p.message, "fix": p.fix, "text": str(p)})
            return out

        click.echo(json.dumps({"source": instance, "valid": not errs,
                               "summary": summary(inst) if inst is not None else None,
                               "errors": rows(errs), "warnings": rows(warns)}, indent=2))
        raise ExitWith(EXIT_INPUT if errs else EXIT_OK)
    if errs:
        for line in describe_problems(instance, errs, InputError.subject).splitlines():
            err_console.print(line, markup=False, soft_wrap=True)
    if inst is not None and not errs:
        from rich.table import Table

        s = summary(inst)
        table = Table(title=f"{instance}: {s['name']}", show_header=False)
        table.add_column("what")
        table.add_column("holds", justify="right")
        h = f"{s['periods']} x {s['period_hours']:g} h from {inst.horizon.start:%Y-%m-%d %H:%M} UTC"
        for what, holds in (
            ("horizon", h),
            ("GPU types", f"{s['gpu_types']}"),
            ("sites / GPU pools", f"{s['sites']} / {s['pools']}"),
            ("GPUs available / reserved", f"{s['gpus_available']:,} / {s['gpus_reserved']:,}"),
            ("power ceiling (sum of site maxima)", f"{s['power_cap_mw']:,.1f} MW"),
            ("regions / data sources / links", f"{s['regions']} / {s['data_sources']} / {s['links']}"),
            ("jobs (mandatory / optional)", f"{s['jobs']} ({s['jobs_mandatory']} / {s['jobs_optional']})"),
            ("services", f"{s['services']}"),
            ("total demand", f"{s['demand_mtok']:,.0f} million tokens"),
            ("AI model profiles", f"{s['profiles']}"),
            ("lease decisions (pools / sites)", f"{s['decided_pools']} / {s['decided_sites']}"),
            ("scenarios", f"{s['scenarios'] or 'none (one, probability 1)'}"),
        ):
            table.add_row(what, holds)
        console.print(table)
    if warns:
        target = err_console if errs else console
        target.print(f"{len(warns)} warning{'s' if len(warns) != 1 else ''}:", markup=False, soft_wrap=True)
        for line in format_problems(warns):
            target.print(line, markup=False, soft_wrap=True)
    if errs:
        raise ExitWith(EXIT_INPUT)
    console.print(f"valid: no errors, {len(warns)} warning{'s' if len(warns) != 1 else ''}", markup=False, soft_wrap=True)
    raise ExitWith(EXIT_OK)


# --- profiles ---
@main.command("profiles")
@click.option("--profiles", "profiles_dir", type=click.Path(exists=True, file_okay=False, path_type=str),
              default=None, help="Folder of your own AI model profiles (default: the nearest models/ "
                                 "at or above the current folder).")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@guarded
def profiles_cmd(profiles_dir: str | None, as_json: bool) -> None:
    """List the AI model profiles a job or service can name: id, where it comes from (the
    packaged profiles, or a folder, which wins for an id it holds) and key figures."""
    import json
    from pathlib import Path

    from allocator.io import find_profiles_dir, load_profile
    from allocator.profiles import known

    folder = Path(profiles_dir) if profiles_dir is not None else find_profiles_dir(Path.cwd())
    rows = []
    for f in known(folder):
        with f.path() as path:
            p = load_profile(path)
        tr, inf = p.training, p.inference
        rows.append({
            "id": p.id, "name": p.name,
            "source": display_source(f.source, path),
            "parameters_b": p.parameters_b, "active_parameters_b": p.active_parameters_b,
            "training_gpu_hours_h100": None if tr is None else tr.gpu_hours_h100,
            "reference_tokens_t": None if tr is None else tr.reference_tokens_t,
            "tokens_per_s_per_gpu": {} if inf is None else dict(inf.tokens_per_s_per_gpu),
            "estimate": p.estimate,
        })
    if as_json:
        click.echo(json.dumps({"folder": None if folder is None else str(folder), "profiles": rows}, indent=2))
        raise ExitWith(EXIT_OK)
    from rich.table import Table

    table = Table(title=f"{len(rows)} AI model profiles")
    for col, just in (("id", "left"), ("source", "left"), ("params B (active)", "right"),
                      ("train GPU-h H100 / tokens", "right"), ("tok/s per GPU", "left"),
                      ("estimate", "left")):
        table.add_column(col, justify=just, no_wrap=col == "id")
    for r in rows:
        params = "-" if r["parameters_b"] is None else display.qty(r["parameters_b"])
        if r["active_parameters_b"] not in (None, r["parameters_b"]):
            params += f" ({display.qty(r['active_parameters_b'])})"
        train = "-" if r["training_gpu_hours_h100"] is None else (
            f"{r['training_gpu_hours_h100'] / 1e6:,.4g}M / {r['reference_tokens_t']:g}T")
        tps = ", ".join(f"{g} {display.qty(x)}" for g, x in r["tokens_per_s_per_gpu"].items()) or "-"
        table.add_row(r["id"], r["source"], params, train, tps, "yes" if r["estimate"] else "no")
    console.print(table)
    where = "none (no models/ folder at or above the current folder)" if folder is None else str(folder)
    console.print(f"folder: {where}; a profile there wins over the packaged one of the same id",
                  markup=False, soft_wrap=True)
    raise ExitWith(EXIT_OK)


def display_source(source: str, path) -> str:
    """'packaged', or 'folder <file>' for a profile of the user's."""
    return "packaged" if source == "packaged" else f"folder {path}"


# --- report ---
@main.command("report")
@click.argument("schedule_dir", type=click.Path(path_type=str))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=str),
              help="HTML file to write (one self-contained file, opens offline).")
@click.option("--png", "png_dir", type=click.Path(file_okay=False, path_type=str), default=None,
              help="Also write every figure as PNG into this folder (for slides).")
@click.option("--instance", "instance_path", type=click.Path(path_type=str), default=None,
              help="The instance solved: adds job deadlines and the exact horizon.")
@loads_instance
@guarded
def report_cmd(schedule_dir: str, out: str, png_dir: str | None, instance_path: str | None) -> None:
    """Write an HTML report of a schedule folder (or a sweep folder) with its figures."""
    from allocator.report import write_report
    from allocator.results import check_writable

    check_writable(out, folder=False)  # before any work: a report that cannot be written
    if png_dir is not None:
        check_writable(png_dir, folder=True, option="--png")
    inst = None
    if instance_path is not None:
        from allocator.io import load_instance

        inst = load_instance(instance_path)
    from allocator.progress import shown

    with shown("report"):
        rep = write_report(schedule_dir, out, instance=inst, png_dir=png_dir)
    n = len(rep.figure_ids)
    console.print(f"report written: {out} ({rep.kind}, {n} figure{'s' if n != 1 else ''})",
                  markup=False)
    if rep.pngs:
        console.print(f"{len(rep.pngs)} PNG files in {png_dir}", markup=False)
    raise ExitWith(EXIT_OK)


# --- verify ---
EXIT_VIOLATIONS = 1  # the schedule breaks a rule or its figures do not match


@main.command("verify")
@click.argument("instance", type=click.Path(path_type=str))
@click.argument("schedule_dir", type=click.Path(path_type=str))
@click.option("--max-per-rule", default=20, show_default=True, type=click.IntRange(min=1),
              help="Violations listed per rule before '(+N more)'.")
@click.option("--previous", "previous", type=click.Path(path_type=str), default=None, metavar="PREV_DIR",
              help="The schedule SCHEDULE_DIR re-plans: also check frozen jobs, move budget and move costs.")
@loads_instance
@guarded
def verify_cmd(instance: str, schedule_dir: str, max_per_rule: int, previous: str | None) -> None:
    """Check an exported schedule against its instance, independently of the solver.

    Recomputes every rule and cost term from the instance and the schedule's decisions;
    exits 0 if all hold and the exported figures match, 1 listing each violation."""
    from allocator.io import load_instance
    from allocator.verify import describe_ok, group_by_rule, verify

    inst = load_instance(instance)
    ver = verify(inst, schedule_dir, previous=previous)
    if ver.ok:
        console.print(describe_ok(ver), markup=False, soft_wrap=True)
        raise ExitWith(EXIT_OK)
    n = len(ver.violations)
    console.print(f"schedule NOT valid: {n} violation{'s' if n != 1 else ''}", markup=False,
                  soft_wrap=True)
    for rule, items in group_by_rule(ver.violations).items():
        for v in items[:max_per_rule]:
            console.print(f"  {v}", markup=False, soft_wrap=True)
        if len(items) > max_per_rule:
            console.print(f"  (+{len(items) - max_per_rule} more {rule})", markup=False, soft_wrap=True)
    raise ExitWith(EXIT_VIOLATIONS)


# --- generate ---
@main.command("generate")
@click.option("--size", type=click.Choice(["S", "M", "L", "XL"], case_sensitive=False), default=None,
              help="Preset counts: S 50 jobs/4 sites/24 periods, M 200/8/48, L 1000/10/168, "
                   "XL 5000/30/336; --jobs etc. override it.")
@click.option("--jobs", type=click.IntRange(min=0), default=None, help="Training jobs.")
@click.option("--services", type=click.IntRange(min=0), default=None, help="Inference services.")
@click.option("--sites", type=click.IntRange(min=1), default=None, help="Sites (the first is a power lease).")
@click.option("--periods", type=click.IntRange(min=2), default=None, help="Periods in the horizon.")
@click.option("--period-hours", type=click.FloatRange(min=0, max=24, min_open=True), default=1.0,
              show_default=True, help="Length of one period in hours.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: same seed, same files.")
@click.option("--out", "out", required=True, type=click.Path(path_type=str), help="Folder to write.")
@click.option("--force", is_flag=True, help="Overwrite an instance already in --out.")
@guarded
def generate_cmd(size: str | None, jobs: int | None, services: int | None, sites: int | None,
                 periods: int | None, period_hours: float, seed: int, out: str, force: bool) -> None:
    """Write a seeded synthetic instance (instance.yaml + CSV tables) with realistic proportions."""
    from allocator.generate import SIZES, generate_instance, write_instance
    from allocator.results import check_writable

    check_writable(out, folder=True)  # before generating: an XL instance takes a while
    preset = SIZES[(size or "S").upper()]
    counts = {"jobs": jobs, "services": services, "sites": sites, "periods": periods}
    counts = {k: preset[k] if v is None else v for k, v in counts.items()}
    from allocator.progress import shown, stage

    with shown("generate"):
        stage("generate")
        inst = generate_instance(**counts, seed=seed, period_hours=period_hours)
        stage("write")
        path = write_instance(inst, out, force=force)
    gpus = sum(p.available for s in inst.sites for p in s.pools)
    console.print(
        f"wrote {path}: {len(inst.jobs)} jobs, {len(inst.services)} services, {len(inst.sites)} sites "
        f"({gpus} GPUs), {inst.horizon.periods} periods of {inst.horizon.period_hours:g} h, seed {seed}",
        markup=False, soft_wrap=True)
    raise ExitWith(EXIT_OK)


# --- solve ---
@main.command("solve")
@click.argument("instance", type=click.Path(dir_okay=True, path_type=str))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Folder to write the schedule into (tables + summary.json).")
@click.option("--time-limit", "time_limit", type=click.FloatRange(min=0), default=None,
              metavar="S", help="Bound the whole solve (index, greedy plan, model build, "
              "HiGHS, explanation) by S seconds; a schedule found so far is kept with its gap. "
              "Default: no limit for strategy mip and the greedy planner, 600 s for the "
              "neighbourhood search (strategy lns, which auto picks for large instances).")
@click.option("--gap", type=click.FloatRange(min=0, max=1, max_open=True), default=None,
              metavar="G", help="Relative gap at which to stop, e.g. 0.01 for 1% "
              "(default 0.0001).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="HiGHS threads.")
@click.option("--seed", type=int, default=None, help="HiGHS random seed (default 0).")
@click.option("--objective", type=click.Choice(["cost", "carbon", "carbon-then-cost",
                                                "cost-then-carbon"]),
              default="cost", show_default=True, help="What to minimise.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet", "json"]), default="csv",
              show_default=True, help="Format of the exported tables.")
@click.option("--duals", is_flag=True, help="Also export marginal values of power, GPU and "
              "bandwidth capacity (duals table).")
@click.option("--heuristic", type=click.Choice(["greedy"]), default=None,
              help="Use the greedy planner alone (no MIP; status feasible, no bound).")
@click.option("--strategy", type=click.Choice(["auto", "mip", "lns"]), default="auto", show_default=True,
              help="mip: HiGHS on the whole model; lns: LP bound and neighbourhood search "
              "for large instances (cost objective); auto: lns for large cost-objective "
              "instances, mip otherwise.")
@click.option("--no-greedy-fallback", "--no-warm-start", "no_greedy_fallback", is_flag=True,
              help="Do not fall back on the greedy plan when a limit stops HiGHS "
              "(--no-warm-start is its former name).")
@click.option("--force", is_flag=True, help="Replace a schedule already in --out.")
@click.option("--quiet", is_flag=True, help="Print only the status line (no live progress).")
@click.option("--verbose", is_flag=True, help="Show the HiGHS log.")
@click.option("--previous", "previous", type=click.Path(path_type=str), default=None, metavar="PREV_DIR",
              help="Re-plan: change the schedule in PREV_DIR (frozen jobs, move costs; see docs/replanning.md).")
@click.option("--now", "now", type=click.IntRange(min=0), default=None, metavar="PERIOD",
              help="Re-plan: jobs started before PERIOD are frozen; earlier periods are history (default 0).")
@click.option("--max-moves", "max_moves", type=click.IntRange(min=0), default=None, metavar="N",
              help="Re-plan: at most N jobs change site, GPU type or option (default: no cap).")
@click.option("--max-moved-gpus", "max_moved_gpus", type=click.IntRange(min=0), default=None, metavar="G",
              help="Re-plan: at most G GPUs in moved jobs (default: no cap).")
@click.option("--log", "log_file", type=click.Path(dir_okay=False, path_type=str), default=None,
              metavar="FILE", help="Append the solver log and allocator's stage lines to FILE.")
@loads_instance
@guarded
def solve_cmd(instance, out, time_limit, gap, threads, seed, objective, fmt, duals, heuristic,
              strategy, no_greedy_fallback, force, quiet, verbose, previous, now, max_moves,
              max_moved_gpus, log_file):
    """Solve INSTANCE (a YAML file or its folder) and export the schedule into --out.

    Ctrl-C stops the search: the best schedule found so far is written (status feasible,
    with its bound and gap) and the command exits 130; a second Ctrl-C aborts at once and
    writes nothing."""
    from allocator import interrupt
    from allocator import results as results_mod
    from allocator.api import solve
    from allocator.options import SolveOptions
    from allocator.progress import shown

    if previous is not None and Path(previous).resolve() == Path(out).resolve():
        raise click.UsageError("--out must not be the --previous folder: the previous plan would be replaced")
    results_mod.check_export_target(out, force, fmt)  # refuse a taken --out before solving
    changes = {"time_limit_s": time_limit, "mip_gap": gap, "threads": threads, "seed": seed,
               "previous": previous, "now": now, "max_moves": max_moves, "max_moved_gpus": max_moved_gpus}
    opts = SolveOptions(objective=objective, duals=duals, verbose=verbose, heuristic=heuristic,
                        greedy_fallback=not no_greedy_fallback, strategy=strategy,
                        **{k: v for k, v in changes.items() if v is not None})
    with shown("solve", quiet=quiet or verbose, log=log_file):
        result = solve(instance, opts, on_interrupt="return")
    interrupted = interrupt.requested()  # Ctrl-C stopped the search: result is its incumbent
    if interrupted and not result.status.has_schedule:
        console.print(f"interrupted: {result.status.value}, no schedule; nothing written to {out}",
                      markup=False, soft_wrap=True)
        raise ExitWith(EXIT_INTERRUPTED)
    try:
        folder = str(results_mod.export_result(result, out, fmt=fmt, force=force))
    except results_mod.ScheduleKept:
        # a solve without a schedule never replaces one: the user keeps what they had
        folder = ""
    code = _render_solve(result, folder or out, quiet, kept=not folder)
    raise ExitWith(EXIT_INTERRUPTED if interrupted else code)


def _render_solve(result, folder: str, quiet: bool, kept: bool = False) -> int:
    """Print the outcome of a solve; return its exit code. ``kept``: nothing was written,
    the schedule already in ``folder`` stays."""
    from rich.table import Table

    status = result.status.value
    gap = "" if result.gap is None else f", gap {display.pct(result.gap)}"
    obj = "" if result.objective is None else f", objective {display.fixed(result.objective)}"
    where = "schedule" if result.status.has_schedule else "summary"
    if kept:
        console.print(f"{status}{obj}{gap}; nothing written: the schedule already in {folder} "
                      "is kept (this solve has none)", markup=False, soft_wrap=True)
    else:
        console.print(f"{status}{obj}{gap}; {where} in {folder}", markup=False, soft_wrap=True)
    if result.status.has_schedule and not quiet:
        head = Table(show_header=False, box=None)
        head.add_column()
        head.add_column(justify="right")
        head.add_row("objective", display.fixed(result.objective))
        head.add_row("best bound", "-" if result.bound is None else display.fixed(result.bound))
        head.add_row("gap", "-" if result.gap is None else display.pct(result.gap))
        for term, usd in result.costs.items():
            if abs(usd) > 0.005:
                head.add_row(f"  {term} $", display.fixed(usd))
        if result.total_cost is not None:
            head.add_row("total cost $", display.fixed(result.total_cost))
        if result.emissions_t is not None:
            head.add_row("emissions tCO2", display.fixed(result.emissions_t))
        head.add_row("build / solve s", f"{result.build_s:.2f} / {result.solve_s:.2f}")
        head.add_row("solver", result.solver)
        console.print(head)
        leases = result.frames.get("leases")
        if leases is not None and len(leases):
            t = Table(title="leases (decided)")
            for c in ("site", "resource", "term", "size", "cost $"):
                t.add_column(c, justify="left" if c in ("site", "resource", "term") else "right")
            for r in leases.itertuples(index=False):
                t.add_row(str(r.site), str(r.resource), str(r.term),
                          f"{float(r.size):,.6g} {r.unit}", display.fixed(r.cost_usd))
            console.print(t)
        if result.scenarios:
            t = Table(title="scenarios (expected total = probability-weighted sum)")
            for c in ("scenario", "probability", "status", "total cost $"):
                t.add_column(c, justify="left" if c in ("scenario", "status") else "right")
            table = result.frames["scenarios"]
            for r in table.itertuples(index=False):
                t.add_row(str(r.scenario), f"{r.probability:g}", str(r.status),
                          "-" if r.total_cost_usd is None else display.fixed(r.total_cost_usd))
            console.print(t)
        util = _site_utilisation(result.frames)
        if util:
            t = Table(title="peak utilisation per site")
            for c in ("site", "GPUs in use / available", "power MW / ceiling"):
                t.add_column(c, justify="left" if c == "site" else "right")
            for row in util:
                t.add_row(*row)
            console.print(t)
    if result.message and not quiet:
        console.print(f"note: {result.message}", markup=False)
    if result.status.has_schedule:
        return EXIT_OK
    if result.status.value == "infeasible":
        err_console.print("the instance is infeasible:", markup=False)
        for line in result.explanation or ["(no explanation available)"]:
            err_console.print(f"  - {line}", markup=False, soft_wrap=True)
        return EXIT_INFEASIBLE
    if result.status.value == "no_solution":
        err_console.print(
            "no schedule found within the limits; try a longer --time-limit, a larger --gap "
            "(e.g. 0.01), or a smaller instance", markup=False, soft_wrap=True)
        return EXIT_NO_SOLUTION
    err_console.print(f"the solve ended with status {status}: {result.message}; this points "
                      "to a modelling bug, please report it with the instance", markup=False,
                      soft_wrap=True)
    return EXIT_BUG


def _site_utilisation(frames) -> list[tuple[str, str, str]]:
    """Per site: peak GPUs in use over all types against what is available in that period, and
    the peak power against its ceiling in that period."""
    gpus, sites = frames.get("site_gpus"), frames.get("sites")
    rows = []
    if gpus is None or sites is None or gpus.empty:
        return rows
    per = gpus.groupby(["site", "period"], sort=False)[["gpus_in_use", "gpus_available"]].sum()
    for site, g in per.groupby(level="site", sort=False):
        peak = g.loc[g["gpus_in_use"].idxmax()]
        power = sites[sites["site"] == site]
        if len(power):
            p = power.loc[(power["power_mw"] / power["power_cap_mw"].where(
                power["power_cap_mw"] > 0)).fillna(0).idxmax()]
            ptxt = f"{display.fixed(p['power_mw'])} / {display.fixed(p['power_cap_mw'])}"
        else:
            ptxt = "-"
        rows.append((str(site), f"{int(peak['gpus_in_use']):,} / {int(peak['gpus_available']):,}",
                     ptxt))
    return rows


if __name__ == "__main__":
    main(prog_name="allocator")
