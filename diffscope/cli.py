"""The `diffscope` command: organisms, zoo, demo, prepare, report, serve, crosscoder, investigate,
bench and grade.

Each sub-command parses its arguments here and calls into the package; errors a user can fix are
printed as one plain line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


class UserError(Exception):
    """A problem with the user's input; printed without a traceback."""


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


def cmd_zoo_build(args: argparse.Namespace) -> int:
    from diffscope.organisms.zoo import build_zoo

    results = build_zoo(
        args.size, only=args.only or None, progress=not args.quiet, report=_print_stage
    )
    failed = [r.name for r in results if not r.passed]
    if failed:
        err.print(f"[red]behavioural check failed for: {', '.join(failed)}[/red]")
        return 1
    out.print(f"zoo ({args.size}) ready: {len(results)} entries")
    return 0


def _print_summary_table(summary, out_dir) -> None:
    """The benchmark's Markdown table (scores per organism and agent, method minus blackbox)."""
    from diffscope.bench.summary import markdown

    print(markdown(summary).split("\n## Runs")[0].rstrip())
    out.print(f"report: {out_dir / 'report.html'}")


def cmd_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from diffscope.agent.loop import AgentBudget
    from diffscope.bench import run_benchmark
    from diffscope.organisms.registry import all_organisms

    organisms = args.organisms or sorted(all_organisms())
    budget = AgentBudget(max_tool_calls=args.max_tool_calls, max_wall_s=args.max_wall_s)
    out_dir = Path(args.out)
    summary = run_benchmark(
        organisms,
        args.agents.split(","),
        args.model,
        args.grader,
        args.runs,
        args.parallel,
        out=out_dir,
        budget=budget,
        base_url=args.base_url,
        progress=not args.quiet,
    )
    _print_summary_table(summary, out_dir)
    return 0


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

    from diffscope.organisms.zoo import toy_organisms
    from diffscope.paths import home

    os.environ["DIFFSCOPE_ZOO_SIZE"] = args.size
    code = cmd_zoo_build(argparse.Namespace(size=args.size, only=None, quiet=args.quiet))
    if code != 0:
        err.print("[yellow]some behavioural checks failed; investigating anyway[/yellow]")
    out_dir = Path(args.out) if args.out else home() / "demo" / args.size
    organisms = [o.name for o in toy_organisms()]
    return cmd_bench(
        argparse.Namespace(
            organisms=organisms,
            agents="blackbox,method",
            model="heuristic",
            grader=None,
            runs=1,
            parallel=1,
            out=str(out_dir),
            max_tool_calls=30,
            max_wall_s=900.0,
            base_url=None,
            quiet=args.quiet,
        )
    )


# -- pairs ----------------------------------------------------------------------------------------
def add_pair_args(parser: argparse.ArgumentParser) -> None:
    """ORGANISM, or --base with --finetuned/--adapter; plus loading options."""
    parser.add_argument(
        "organism", nargs="?", help="organism name (see `diffscope organisms list`)"
    )
    parser.add_argument("--base", help="base model: local folder or hub id (instead of ORGANISM)")
    parser.add_argument("--finetuned", help="fine-tuned model: local folder or hub id")
    parser.add_argument("--adapter", help="peft adapter folder or hub id applied on --base")
    parser.add_argument(
        "--size",
        choices=["micro", "small"],
        default=None,
        help="toy zoo size for zoo organisms (default: $DIFFSCOPE_ZOO_SIZE or small)",
    )
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--corpus",
        default=None,
        help="probe corpus: world (default), world:TOPIC, or a .txt/.jsonl path",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the hub (off by default)",
    )


def resolve_pair_args(args: argparse.Namespace):
    """(organism or None, zero-argument loader of the ModelPair) from ORGANISM or --base/..."""
    from diffscope.models import ModelPair
    from diffscope.organisms.registry import get_organism, load_pair

    opts = {"dtype": args.dtype, "device": args.device, "trust_remote_code": args.trust_remote_code}
    if args.organism and args.base:
        raise UserError("give either ORGANISM or --base/--finetuned, not both")
    if args.organism:
        org = get_organism(args.organism)
        return org, lambda: load_pair(org, size=args.size, **opts)
    if not args.base or not (args.finetuned or args.adapter):
        raise UserError("name an ORGANISM, or give --base and one of --finetuned / --adapter")
    return None, lambda: ModelPair.load(args.base, args.finetuned, adapter=args.adapter, **opts)


def corpus_spec(args: argparse.Namespace, org):
    """The probe corpus from --corpus (or the organism's own), cut into --windows windows when the
    command has that option (a generated world document gives about one window)."""
    from diffscope.diffing.artifacts import CorpusSpec

    source = args.corpus or (org.corpus if org is not None and org.corpus else "world")
    windows = getattr(args, "windows", None)
    if windows is None:
        return CorpusSpec(source=source)
    if windows < 1:
        raise UserError(f"--windows must be at least 1, got {windows}")
    defaults = CorpusSpec()
    return CorpusSpec(source=source, max_windows=windows, n_docs=max(defaults.n_docs, windows))


def _progress_callback(label: str):
    """A rich progress bar on stderr driven by (fraction, message) callbacks."""
    from diffscope.organisms.training import progress_bar

    bar = progress_bar(transient=True)
    task = bar.add_task(label, total=1000, info="")

    def update(fraction: float, message: str) -> None:
        bar.update(task, completed=int(1000 * max(0.0, min(1.0, fraction))), info=message)

    return bar, update


def cmd_prepare(args: argparse.Namespace) -> int:
    from diffscope.diffing.artifacts import Artifacts

    org, loader = resolve_pair_args(args)
    pair = loader()
    bar, update = _progress_callback("prepare")
    with bar:
        arts = Artifacts(pair, corpus_spec(args, org), progress=update)
        done = arts.prepare()
        if args.crosscoder:
            arts.crosscoder()
            done["crosscoder"] = "ok"
    out.print(
        f"prepared artifacts for {pair.name} under {arts.root}: "
        + ", ".join(f"{k} ({v})" for k, v in done.items())
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from diffscope.diffing.artifacts import Artifacts
    from diffscope.diffing.report import write_report

    org, loader = resolve_pair_args(args)
    pair = loader()
    json_out = Path(args.json) if args.json else None
    html_out = Path(args.html) if args.html else None
    if json_out is None and html_out is None:
        html_out = Path(f"diffscope-report-{pair.name}.html")
    bar, update = _progress_callback("report")
    with bar:
        report = write_report(
            Artifacts(pair, corpus_spec(args, org), progress=update),
            json_out,
            html_out,
            progress=update,
        )
    top = ", ".join(f"L{n['layer']}N{n['neuron']}" for n in report["top_neurons"][:5])
    promoted = ", ".join(repr(t["token"]) for t in report["promoted_tokens"][:10])
    out.print(f"top neurons: {top}")
    out.print(f"promoted tokens: {promoted}")
    out.print(f"mean KL(ft||base) per token: {report['kl']['mean']:.4f}")
    for path in (json_out, html_out):
        if path is not None:
            out.print(f"wrote {path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from diffscope.diffing.artifacts import Artifacts
    from diffscope.server import create_server, run_server
    from diffscope.tools import Budget

    org, load = resolve_pair_args(args)
    spec = corpus_spec(args, org)

    def loader() -> Artifacts:  # the served object carries the probe corpus of the artifacts
        return Artifacts(load(), spec)

    budget = Budget(tool_calls=args.max_tool_calls, model_queries=args.max_model_queries)
    server = create_server(loader, args.profile, budget=budget, organism=org)
    run_server(server, args.transport, host=args.host, port=args.port)
    return 0


def cmd_investigate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from diffscope.agent.loop import AgentBudget, run_investigation

    budget = AgentBudget(
        max_tool_calls=args.max_tool_calls, max_tokens=args.max_tokens, max_wall_s=args.max_wall_s
    )
    result = run_investigation(
        args.organism,
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
    for claim in hyp.key_claims:
        out.print(f"  - {claim}")
    if hyp.confidence is not None:
        out.print(f"confidence: {hyp.confidence:.2f}")
    if result.error:
        err.print(f"[red]error:[/red] {result.error}")
    out.print(f"log: {result.log_path}")
    return 0 if result.status != "error" else 1


def cmd_crosscoder_train(args: argparse.Namespace) -> int:
    from diffscope.diffing.crosscoder.pipeline import train_for_pair

    org, loader = resolve_pair_args(args)
    corpus = corpus_spec(args, org)
    art = train_for_pair(
        loader(),
        layer=args.layer,
        loss=args.loss,
        dict_size=args.dict_size,
        k=args.k,
        steps=args.steps,
        corpus=corpus,
    )
    out.print_json(data=art.summary())
    return 0


# -- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffscope",
        description="What did this fine-tune change? Diff a base model against its fine-tune.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("organisms", help="list or show known organisms (base/fine-tune pairs)")
    osub = p.add_subparsers(dest="action", metavar="ACTION")
    osub.required = True
    q = osub.add_parser("list", help="list organisms")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.set_defaults(func=cmd_organisms_list)
    q = osub.add_parser("show", help="show one organism (ground truth hidden unless --reveal)")
    q.add_argument("name")
    q.add_argument("--reveal", action="store_true", help="also print the ground truth")
    q.set_defaults(func=cmd_organisms_show)

    p = sub.add_parser("zoo", help="the offline toy zoo")
    zsub = p.add_subparsers(dest="action", metavar="ACTION")
    zsub.required = True
    q = zsub.add_parser("build", help="train (or reuse) the toy zoo under $DIFFSCOPE_HOME")
    q.add_argument("--size", choices=["micro", "small"], default="small")
    q.add_argument("--only", nargs="+", metavar="NAME", help="build only these organisms")
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=cmd_zoo_build)

    p = sub.add_parser(
        "demo",
        help="the offline demo: build the toy zoo, run the heuristic blackbox and method "
        "investigators on every organism, grade them and print the table",
    )
    p.add_argument("--size", choices=["micro", "small"], default="small")
    p.add_argument("--out", help="benchmark folder (default $DIFFSCOPE_HOME/demo/SIZE)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmark investigators on organisms, graded vs ground truth")
    p.add_argument("--organisms", nargs="+", metavar="NAME", help="default: every organism")
    p.add_argument(
        "--agents",
        default="blackbox,method",
        help="comma-separated: blackbox, method, or profile names",
    )
    p.add_argument("--model", default="heuristic", help="heuristic or provider/model")
    p.add_argument("--base-url", help="endpoint for openai-compatible/MODEL")
    p.add_argument(
        "--grader",
        default=None,
        help="default: offline key-fact grader; or provider/model for the LLM rubric",
    )
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--max-tool-calls", type=int, default=30)
    p.add_argument("--max-wall-s", type=float, default=900.0)
    p.add_argument("--out", required=True, help="benchmark folder (resumes if it exists)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("grade", help="re-grade a benchmark folder from its run logs")
    p.add_argument("dir")
    p.add_argument("--grader", default=None, help="default: the offline key-fact grader")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("prepare", help="compute a pair's cached artifacts ahead of serving")
    add_pair_args(p)
    p.add_argument("--crosscoder", action="store_true", help="also train the crosscoder")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("report", help="write a difference report (JSON and/or HTML) for a pair")
    add_pair_args(p)
    p.add_argument("--json", metavar="OUT", help="write the report as JSON here")
    p.add_argument("--html", metavar="OUT", help="write a self-contained HTML page here")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("serve", help="serve a pair's diffing tools over MCP (stdio or http)")
    add_pair_args(p)
    p.add_argument(
        "--profile",
        default="method",
        help="tool profile: blackbox, method, or a method tag (neurons, kl, ...)",
    )
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--max-tool-calls", type=int, default=None, help="session budget of tool calls")
    p.add_argument(
        "--max-model-queries",
        type=int,
        default=None,
        help="session budget of prompts sent to the models",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("investigate", help="run one investigator agent on an organism")
    p.add_argument("organism")
    p.add_argument(
        "--agent", default="method", help="blackbox, method, or a profile name (neurons, kl, ...)"
    )
    p.add_argument(
        "--model",
        default="heuristic",
        help="heuristic (offline) or provider/model, e.g. anthropic/claude-sonnet-4-5",
    )
    p.add_argument("--base-url", help="endpoint for openai-compatible/MODEL")
    p.add_argument("--max-tool-calls", type=int, default=30)
    p.add_argument("--max-tokens", type=int, default=500_000)
    p.add_argument("--max-wall-s", type=float, default=900.0)
    p.add_argument("--transport", choices=["inprocess", "stdio"], default="inprocess")
    p.add_argument("--out", help="run log path (.json) or folder")
    p.set_defaults(func=cmd_investigate)

    p = sub.add_parser("crosscoder", help="crosscoders over paired activations")
    csub = p.add_subparsers(dest="action", metavar="ACTION")
    csub.required = True
    q = csub.add_parser("train", help="train (or load the cached) crosscoder for a pair")
    add_pair_args(q)
    q.add_argument("--loss", choices=["batchtopk", "l1"], default="batchtopk")
    q.add_argument("--dict-size", type=int, default=None)
    q.add_argument("--k", type=int, default=None, help="BatchTopK k (active latents per token)")
    q.add_argument("--layer", type=int, default=None, help="layer (default: the middle one)")
    q.add_argument("--steps", type=int, default=None)
    q.add_argument(
        "--windows",
        type=int,
        default=None,
        help="64-token corpus windows to collect activations over (default 384; more data gives "
        "cleaner fine-tune-only latents: the organism benchmark uses 8000)",
    )
    q.set_defaults(func=cmd_crosscoder_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; finished work is kept and the next run resumes[/yellow]")
        return 130
    except (UserError, ValueError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    except Exception as exc:
        from diffscope.agent.providers.base import ProviderError

        if isinstance(exc, ProviderError):
            err.print(f"[red]error:[/red] {exc}")
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
