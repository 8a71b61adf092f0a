"""The `diffscope` command: zoo, organisms, demo, report, serve, investigate, grade, bench.

Each sub-command parses its arguments here and calls into the package; errors a user can fix are
printed as one plain line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.table import Table

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

Handler = Callable[[argparse.Namespace], int]


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


def cmd_demo(args: argparse.Namespace) -> int:
    code = cmd_zoo_build(argparse.Namespace(size=args.size, only=None, quiet=args.quiet))
    cmd_organisms_list(argparse.Namespace(json=False))
    return code


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

    p = sub.add_parser("demo", help="the offline demo: build the toy zoo and list the organisms")
    p.add_argument("--size", choices=["micro", "small"], default="small")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)
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


if __name__ == "__main__":
    sys.exit(main())
