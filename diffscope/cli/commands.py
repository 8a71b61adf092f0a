"""The `diffscope` sub-commands' handlers: each takes the parsed arguments, calls into the package
and returns an exit code. The parser and `main` are in `diffscope.cli`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


class UserError(Exception):
    """A problem with the user's input; printed without a traceback."""


def names_list(text: str) -> list[str]:
    """An argparse type: "a,b, c" -> ["a", "b", "c"] (with action="extend", flags may repeat)."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


# -- organisms ------------------------------------------------------------------------------------
def cmd_organisms_list(args: argparse.Namespace) -> int:
    from diffscope.organisms.registry import all_organisms

    organisms = all_organisms()
    if args.json:
        rows = [o.public_view() for o in organisms.values()]
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"{len(organisms)} organisms")
    for col in ("name", "kind", "type", "base", "fine-tune"):
        table.add_column(col)
    for org in organisms.values():
        ft = org.finetuned or f"{org.adapter} (adapter)"
        table.add_row(org.name, org.kind, org.type, org.base, ft)
    out.print(table)
    return 0


def cmd_organisms_show(args: argparse.Namespace) -> int:
    from diffscope.organisms.registry import get_organism, with_built_ground_truth

    org = get_organism(args.name)
    data = with_built_ground_truth(org).model_dump() if args.reveal else org.public_view()
    print(json.dumps(data, indent=2))
    if not args.reveal:
        err.print("[dim](ground truth hidden; add --reveal to show it)[/dim]")
    return 0


# -- zoo ------------------------------------------------------------------------------------------
def _print_stage(result) -> None:
    mark = "[green]ok[/green]" if result.passed else "[red]FAILED[/red]"
    where = "cached" if result.cached else f"{result.seconds:.0f}s"
    out.print(f"{mark} [bold]{result.name}[/bold] ({where}): {result.summary}")


def build_zoo_checked(
    size: str, only: list[str] | None, quiet: bool, zoo: str = "toy"
) -> dict[str, tuple[bool, str]]:
    """Build (or reuse) the toy zoo of `size` or the real-model zoo (`zoo="smol"`), printing each
    entry; `name -> (passed, reason)` of its checks."""
    if zoo == "smol":
        from diffscope.organisms.smol.build import build_smol_zoo

        results = build_smol_zoo(only=only or None, progress=not quiet, report=_print_stage)
    else:
        from diffscope.organisms.zoo import build_zoo

        results = build_zoo(size, only=only or None, progress=not quiet, report=_print_stage)
    return {r.name: (r.passed, r.summary) for r in results}


def _zoo_label(args: argparse.Namespace) -> str:
    return "smol" if getattr(args, "zoo", "toy") == "smol" else args.size


def cmd_zoo_build(args: argparse.Namespace) -> int:
    checks = build_zoo_checked(args.size, args.only, args.quiet, getattr(args, "zoo", "toy"))
    failed = [name for name, (passed, _) in checks.items() if not passed]
    if failed:
        err.print(f"[red]behavioural check failed for: {', '.join(failed)}[/red]")
        return 1
    out.print(f"zoo ({_zoo_label(args)}) ready: {len(checks)} entries")
    return 0


def zoo_organisms(zoo: str) -> list[str]:
    """The organisms `bench` runs by default: those of `zoo` (toy or smol) and the user's own
    (DIFFSCOPE_ORGANISMS pairs that belong to no built-in zoo)."""
    from diffscope.organisms.registry import all_organisms, zoo_of

    return sorted(name for name, org in all_organisms().items() if zoo_of(org) in (zoo, None))


def _print_summary_table(summary, out_dir) -> None:
    """The benchmark's table on the terminal (rich); the files keep Markdown and HTML."""
    from diffscope.bench.render import check_notes, terminal_table

    out.print(terminal_table(summary))
    for note in check_notes(summary):
        err.print(f"[yellow]{note}[/yellow]")
    out.print(f"table: {out_dir / 'summary.md'}; report: {out_dir / 'report.html'}")


def built_checks(names: list[str]) -> dict[str, tuple[bool, str]]:
    """The last behavioural check of each named toy organism that the zoo has built, when the
    zoo can tell (`organisms.zoo.check_result`); organisms it cannot tell about are left out."""
    from diffscope.organisms import zoo

    check_result = getattr(zoo, "check_result", None)
    checks: dict[str, tuple[bool, str]] = {}
    if check_result is None:
        return checks
    for name in names:
        try:
            result = check_result(name)
        except Exception:  # not a zoo organism, or not built: nothing to say about it
            continue
        if result is None:
            continue
        if isinstance(result, tuple):
            checks[name] = (bool(result[0]), str(result[1]))
        else:
            reason = getattr(result, "reason", None) or getattr(result, "summary", "")
            checks[name] = (bool(result.passed), str(reason))
    return checks


def bench_config(
    args: argparse.Namespace, organisms: list[str], checks: dict[str, tuple[bool, str]]
):
    """The one `BenchConfig` of a `bench` (or `demo`) command."""
    from diffscope.agent.loop import AgentBudget
    from diffscope.bench import AGENTS, BenchConfig, failed_checks

    return BenchConfig(
        organisms=organisms,
        agents=args.agents or list(AGENTS),
        model=args.model,
        grader=args.grader,
        runs=args.runs,
        parallel=args.parallel,
        budget=AgentBudget(max_tool_calls=args.max_tool_calls, max_wall_s=args.max_wall_s),
        base_url=args.base_url,
        include_failed=args.include_failed,
        failed_checks=failed_checks(checks),
    )


def cmd_bench(args: argparse.Namespace, checks: dict[str, tuple[bool, str]] | None = None) -> int:
    from pathlib import Path

    from diffscope.bench import run_benchmark

    out_dir = Path(args.out)
    user = bench_user_pair(args, out_dir)
    organisms = args.organisms or ([] if user else zoo_organisms(getattr(args, "zoo", "toy")))
    organisms = [*organisms, *([user] if user and user not in organisms else [])]
    if checks is None:
        checks = built_checks(organisms)
    config = bench_config(args, organisms, checks)
    summary = run_benchmark(config, out_dir, progress=not args.quiet)
    _print_summary_table(summary, out_dir)
    return 0


def bench_user_pair(args: argparse.Namespace, out_dir: Path) -> str | None:
    """The name of the user's own pair (--base ... --truth), kept in OUT/organisms; else None."""
    from diffscope.bench.truth import FOLDER, register, use_folder_organisms, user_organism

    use_folder_organisms(out_dir)  # a resumed folder's own pairs
    truth = getattr(args, "truth", None)
    pair = [getattr(args, k, None) for k in ("base", "finetuned", "adapter")]
    if truth is None:
        if any(pair):
            raise UserError(
                "a pair given by --base/--finetuned/--adapter needs --truth FILE (its ground "
                "truth YAML) to be graded in a benchmark"
            )
        return None
    organism = user_organism(Path(truth), *pair)
    register(organism, Path(out_dir) / FOLDER)
    return organism.name


def cmd_grade(args: argparse.Namespace) -> int:
    from pathlib import Path

    from diffscope.bench import grade_directory

    summary = grade_directory(Path(args.dir), args.grader, progress=not args.quiet)
    _print_summary_table(summary, Path(args.dir))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the zoo, run the offline investigators on every toy organism, grade, summarise."""
    import os
    from pathlib import Path

    from diffscope.organisms.smol.build import smol_organisms
    from diffscope.organisms.zoo import toy_organisms
    from diffscope.paths import home

    zoo = getattr(args, "zoo", "toy")
    if zoo == "toy":
        os.environ["DIFFSCOPE_ZOO_SIZE"] = args.size
    checks = build_zoo_checked(args.size, None, args.quiet, zoo)
    failed = [name for name, (passed, _) in checks.items() if not passed]
    if failed:
        what = (
            "counted anyway (--include-failed)"
            if args.include_failed
            else ("investigated but left out of the averages (--include-failed to count them)")
        )
        err.print(f"[yellow]behavioural check failed for {', '.join(failed)}: {what}[/yellow]")
    out_dir = Path(args.out) if args.out else home() / "demo" / _zoo_label(args)
    organisms = [o.name for o in (smol_organisms() if zoo == "smol" else toy_organisms())]
    return cmd_bench(
        argparse.Namespace(
            organisms=organisms,
            agents=["blackbox", "method"],
            model="heuristic",
            grader=None,
            runs=1,
            parallel=1,
            out=str(out_dir),
            max_tool_calls=30,
            max_wall_s=900.0,
            base_url=None,
            include_failed=args.include_failed,
            quiet=args.quiet,
        ),
        checks,
    )


# -- pairs ----------------------------------------------------------------------------------------
def add_user_pair_args(parser: argparse.ArgumentParser) -> None:
    """--base with --finetuned/--adapter and --truth: a user's own pair among the organisms."""
    parser.add_argument(
        "--base", help="base model of your own pair (local folder, hub id or .gguf); needs --truth"
    )
    parser.add_argument("--finetuned", help="fine-tuned model of your own pair (with --base)")
    parser.add_argument("--adapter", help="peft adapter of your own pair, applied on --base")
    parser.add_argument(
        "--truth",
        metavar="FILE",
        help="ground truth YAML of your own pair (an organism file, or description + key_facts); "
        "the pair is benchmarked with the named organisms",
    )


def pair_spec(args: argparse.Namespace):
    """The `workspace.PairSpec` of ORGANISM or --base/--finetuned/--adapter and the loading options
    (with --windows when the command has it); ValueError saying what to fix."""
    from diffscope.workspace import spec_from_args

    return spec_from_args(args)


def open_pair(args: argparse.Namespace):
    """The opened `workspace.Workspace` (pair, probe corpus, artifacts) the arguments name."""
    from diffscope.workspace import open_workspace

    return open_workspace(pair_spec(args))


def _progress_callback(label: str):
    """A progress display (`diffscope.progress`: a bar in a terminal, plain lines in a log) driven
    by (fraction, message) callbacks; returns (context manager, callback)."""
    from diffscope.progress import Progress, progress

    bar: Progress[int] = progress(1000, label, show=True, transient=True)

    def update(fraction: float, message: str) -> None:
        target = int(1000 * max(0.0, min(1.0, fraction)))
        bar.advance(max(0, target - bar.done), info=message)

    return bar, update


def _pair_of(spec):
    """The pair `spec` opens, in a sharded profile's worker (picklable; one GPU per local rank)."""
    import os

    import torch

    from diffscope.workspace import open_workspace

    gpus = torch.cuda.device_count() if spec.device == "cuda" else 0
    if gpus > 1 and spec.device_map is None:
        spec = spec.model_copy(update={"device": f"cuda:{int(os.environ['LOCAL_RANK']) % gpus}"})
    return open_workspace(spec).pair


def _sharding(args: argparse.Namespace, spec):
    """The `diffing.shard.Sharding` --workers / --dist-address / --rank ask for, else None."""
    import os
    from functools import partial

    from diffscope.diffing.shard import Sharding

    if args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.workers == 1 and args.dist_address is None:
        return None
    rank = args.rank if args.rank is not None else int(os.environ.get("RANK", "0"))
    return Sharding(
        args.workers,
        partial(_pair_of, spec),
        address=args.dist_address,
        rank=rank,
        backend=spec.backend,
        show=True,
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    ws = open_pair(args)
    bar, update = _progress_callback("prepare")
    arts = ws.artifacts
    arts.progress = update
    arts.sharding = sharding = _sharding(args, ws.spec)
    if sharding is not None and sharding.address is not None and sharding.rank != 0:
        from diffscope.diffing.neurons import ProfileConfig
        from diffscope.diffing.shard import profile_sharded

        # a rank other than 0 of a multi-machine job: its shard, the merge, and nothing cached
        cfg = ProfileConfig(intrinsic=True)
        profile_sharded(sharding, arts.windows(), cfg, state_dir=arts.root / "shards")
        out.print(f"rank {sharding.rank}: shard profiled and merged; rank 0 keeps the profile")
        return 0
    with bar:
        done = arts.prepare()
        if args.crosscoder:
            arts.crosscoder()
            done["crosscoder"] = "ok"
    out.print(
        f"prepared artifacts for {ws.name} under {arts.root}: "
        + ", ".join(f"{k} ({v})" for k, v in done.items())
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from diffscope.diffing.report import write_report

    ws = open_pair(args)
    json_out = Path(args.json) if args.json else None
    html_out = Path(args.html) if args.html else None
    if json_out is None and html_out is None:
        html_out = Path(f"diffscope-report-{ws.name}.html")
    bar, update = _progress_callback("report")
    ws.artifacts.progress = update
    with bar:
        report = write_report(ws.artifacts, json_out, html_out, progress=update)
    top = ", ".join(f"L{n['layer']}N{n['neuron']}" for n in report["top_neurons"][:5])
    for line in report["summary"]["lines"]:
        out.print(line, markup=False, highlight=False)
    out.print(f"top neurons: {top}")
    out.print(f"mean KL(ft||base) per token: {report['kl']['mean']:.4f}")
    for path in (json_out, html_out):
        if path is not None:
            out.print(f"wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The same server as `python -m diffscope.server` (and the benchmark's) for these options."""
    from diffscope.server.run import serve

    serve(
        pair_spec(args),
        args.profile,
        args.transport,
        args.host,
        args.port,
        max_tool_calls=args.max_tool_calls,
        max_model_queries=args.max_model_queries,
        prepare_in_background=not args.no_prepare,
        allowed_hosts=args.allowed_host,
        no_token=args.no_token,
    )
    return 0


def cmd_desktop_config(args: argparse.Namespace) -> int:
    """Print (or merge into Claude Desktop's config) a server entry with this Python's own path."""
    from diffscope.desktop import default_config_path, merge_entry, server_entry
    from diffscope.server.run import check_profile

    if args.organism is None and args.base is None:
        args.organism = "sea_topic"
        err.print("[dim](no organism named: using sea_topic; name one or give --base)[/dim]")
    check_profile(args.profile)
    entry = server_entry([*pair_spec(args).server_args(), "--profile", args.profile])
    if not args.write:
        print(json.dumps({"mcpServers": {args.name: entry}}, indent=2))
        return 0
    target = Path(args.config) if args.config else default_config_path()
    backup = merge_entry(target, args.name, entry)
    out.print(f"wrote server {args.name!r} into {target}")
    if backup is not None:
        out.print(f"the previous file is kept as {backup}")
    out.print("restart Claude Desktop to load it")
    return 0


def investigate_target(args: argparse.Namespace):
    """The pair `investigate` serves (ORGANISM, --base with --finetuned/--adapter, or the models
    of a --truth organism file) and the organism to grade against (--truth), or None."""
    from diffscope.bench.truth import user_organism
    from diffscope.workspace import spec_from_args

    truth = None
    if args.truth:
        truth = user_organism(Path(args.truth), args.base, args.finetuned, args.adapter)
        if not args.organism and not args.base:
            models = {"base": truth.base, "finetuned": truth.finetuned, "adapter": truth.adapter}
            args = argparse.Namespace(**{**vars(args), **models})
    if not args.organism and not args.base:
        raise UserError("name an ORGANISM, or give --base with --finetuned or --adapter")
    return spec_from_args(args), truth


def cmd_investigate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from diffscope.agent.budget import AgentBudget
    from diffscope.bench.investigate import run_investigation
    from diffscope.bench.runner import check_model_name

    check_model_name(args.model, args.agent, args.base_url)
    budget = AgentBudget(
        max_tool_calls=args.max_tool_calls, max_tokens=args.max_tokens, max_wall_s=args.max_wall_s
    )
    spec, truth = investigate_target(args)
    result = run_investigation(
        spec,
        args.agent,
        args.model,
        budget=budget,
        out=Path(args.out) if args.out else None,
        transport=args.transport,
        base_url=args.base_url,
    )
    hyp = result.hypothesis
    out.print(f"[bold]status[/bold]: {result.status} (submitted by {result.submitted_by})")
    out.print(f"[bold]hypothesis[/bold]: {hyp.description}")
    cited = {c.text: c.calls for c in hyp.claims}
    for claim in hyp.all_claims():
        calls = f" [{', '.join(cited[claim])}]" if cited.get(claim) else ""
        out.print(f"  - {claim}{calls}", markup=False, highlight=False)
    if hyp.confidence is not None:
        out.print(f"confidence: {hyp.confidence:.2f}")
    if truth is not None:
        from diffscope.graders import get_grader, grade_sync

        grade = grade_sync(get_grader(None, truth), truth, hyp)
        shown = "unscored" if grade.score is None else f"{grade.score:g}"
        out.print(f"[bold]grade[/bold] (offline, vs --truth): {shown}: {grade.reason}")
    if result.error:
        err.print(f"[red]error:[/red] {result.error}")
    out.print(f"log: {result.log_path}")
    return 0 if result.status != "error" else 1


def _crosscoder(args: argparse.Namespace):
    """Train (or load the cached) crosscoder of the pair the arguments name, on its corpus."""
    from diffscope.diffing.crosscoder.pipeline import train_for_pair

    ws = open_pair(args)
    return train_for_pair(
        ws.pair,
        layer=args.layer,
        loss=args.loss,
        dict_size=args.dict_size,
        k=args.k,
        steps=args.steps,
        corpus=ws.corpus,
    )


def cmd_crosscoder_train(args: argparse.Namespace) -> int:
    out.print_json(data=_crosscoder(args).summary())
    return 0


def cmd_crosscoder_capabilities(args: argparse.Namespace) -> int:
    """The capability report of a pair's crosscoder (trained first unless cached)."""
    from diffscope.diffing.crosscoder.artifact import NU_MAX
    from diffscope.diffing.crosscoder.capability import capability_report

    art = _crosscoder(args)
    report = capability_report(
        art, max_nu=NU_MAX if args.max_nu is None else args.max_nu, n_boot=args.boot
    )
    if args.json:
        print(report.model_dump_json(indent=2))
    else:
        print(report.table())
    return 0
