"""The one composition root: a `PairSpec` says which pair to diff, `open_workspace` builds it.

    spec = PairSpec(organism="sea_topic", size="micro")      # or base=..., finetuned=|adapter=...
    ws = open_workspace(spec)                                # ws.pair, ws.corpus, ws.artifacts

Every entry point (the CLI, the benchmark, `python -m diffscope.server`) builds its pair here, so
the probe corpus is decided in one place: `--corpus` when given, else the organism's own
`corpus:`, else the synthetic world corpus for the toy zoo and, for any other pair, the base
model's own samples (`sampled`, see `diffscope.corpus.sampled`). A served pair is the
`Workspace` itself (the tools read `.artifacts` from it). `investigator_view(spec)` is what an
investigator may know about the pair, without loading it and never the ground truth.
`spec.server_args()` turns a spec back into the arguments of `python -m diffscope.server`, so a
spawned server opens the very same workspace.
Only entry points import this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from diffscope.diffing.artifacts import Artifacts, CorpusSpec

Dtype = Literal["float32", "bfloat16", "float16"]
ZooSize = Literal["micro", "small"]
DEFAULT_CORPUS = "world"  # the toy zoo's default
SAMPLED_CORPUS = "sampled"  # every other pair's default: the base model's own samples


class PairSpec(BaseModel):
    """Which base/fine-tune pair to open and how: an organism name, or base + finetuned|adapter.

    `corpus` overrides the probe corpus (world, world:TOPIC, or a .txt/.jsonl path); `windows`
    caps the corpus windows the artifacts are computed on; `size` picks the toy zoo size for
    zoo organisms (default: $DIFFSCOPE_ZOO_SIZE or small).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    organism: str | None = None
    base: str | None = None
    finetuned: str | None = None
    adapter: str | None = None
    size: ZooSize | None = None
    device: str = "cpu"
    dtype: Dtype = "float32"
    device_map: str | None = None
    backend: Literal["hooks", "nnsight"] = "hooks"
    remote: bool = False
    corpus: str | None = None
    windows: int | None = None
    trust_remote_code: bool = False

    @field_validator("windows")
    @classmethod
    def _windows(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError(f"--windows must be at least 1, got {value}")
        return value

    @model_validator(mode="after")
    def _one_pair(self) -> PairSpec:
        if self.organism and (self.base or self.finetuned or self.adapter):
            raise ValueError("give either ORGANISM or --base with --finetuned/--adapter, not both")
        if self.organism:
            return self
        if not self.base:
            if self.finetuned or self.adapter:
                raise ValueError("--finetuned/--adapter need --base (the model they fine-tune)")
            raise ValueError("name an ORGANISM, or give --base and one of --finetuned / --adapter")
        if (self.finetuned is None) == (self.adapter is None):
            raise ValueError(
                f"--base {self.base} needs exactly one of --finetuned (full weights) or "
                "--adapter (peft)"
            )
        return self

    @property
    def label(self) -> str:
        """A short name for logs: the organism, else the fine-tune's reference."""
        return self.organism or str(self.finetuned or self.adapter)

    def server_args(self) -> list[str]:
        """The arguments of `python -m diffscope.server` that open this same spec."""
        args = [self.organism] if self.organism else ["--base", str(self.base)]
        for flag, value in (
            ("--finetuned", self.finetuned),
            ("--adapter", self.adapter),
            ("--size", self.size),
            ("--corpus", self.corpus),
            ("--windows", self.windows),
        ):
            if value is not None:
                args += [flag, str(value)]
        args += ["--device", self.device, "--dtype", self.dtype, "--backend", self.backend]
        if self.device_map is not None:
            args += ["--device-map", self.device_map]
        if self.remote:
            args.append("--remote")
        if self.trust_remote_code:
            args.append("--trust-remote-code")
        return args


def spec_from_args(args: Any) -> PairSpec:
    """The `PairSpec` parsed options describe (ORGANISM or --base with --finetuned/--adapter and
    the loading options; --windows where the command has it); ValidationError saying what to fix."""
    return PairSpec(
        organism=args.organism,
        base=args.base,
        finetuned=args.finetuned,
        adapter=args.adapter,
        size=args.size,
        device=args.device,
        dtype=args.dtype,
        device_map=getattr(args, "device_map", None),
        backend=getattr(args, "backend", "hooks"),
        remote=getattr(args, "remote", False),
        corpus=args.corpus,
        windows=getattr(args, "windows", None),
        trust_remote_code=args.trust_remote_code,
    )


def corpus_source(spec: PairSpec, organism_corpus: str | None = None, toy: bool = True) -> str:
    """The probe corpus: the spec's, else the organism's own, else the world corpus for a toy-zoo
    pair (`toy`) and the base model's own samples for any other."""
    return spec.corpus or organism_corpus or (DEFAULT_CORPUS if toy else SAMPLED_CORPUS)


def _is_toy(spec: PairSpec, org: Any) -> bool:
    """Whether the base is a toy-zoo model (`zoo:NAME`, or a folder inside the built zoo), whose
    vocabulary the world corpus is written in."""
    if org is not None:
        return str(org.base).startswith("zoo:")
    from diffscope.paths import home

    base = Path(str(spec.base)).expanduser()
    return base.exists() and base.resolve().is_relative_to((home() / "zoo").resolve())


def _default_source(spec: PairSpec, org: Any) -> str:
    organism_corpus = org.corpus if org is not None else None
    return corpus_source(spec, organism_corpus, toy=_is_toy(spec, org))


def corpus_spec(source: str, windows: int | None = None) -> CorpusSpec:
    """The artifacts' corpus settings; `windows` caps the windows (and documents drawn)."""
    if windows is None:
        return CorpusSpec(source=source)
    defaults = CorpusSpec()
    return CorpusSpec(source=source, max_windows=windows, n_docs=max(defaults.n_docs, windows))


def _organism(spec: PairSpec) -> Any:
    from diffscope.organisms import registry

    return registry.get_organism(spec.organism) if spec.organism else None


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _check_source(label: str, ref: str, adapter: bool = False) -> None:
    """A local source must exist and hold a model (or an adapter); hub ids pass through."""
    path = Path(ref).expanduser()
    if not path.exists():
        if _HUB_ID.match(ref):
            return  # a hub id: loaded (and downloaded) only because the user named it
        raise ValueError(
            f"{label} {ref!r}: no such file or folder; give an existing path or a hub id"
        )
    if path.is_file():
        if path.suffix != ".gguf":
            raise ValueError(
                f"{label} {ref!r} is a file but not a .gguf model; give a model folder"
            )
        return
    wanted = "adapter_config.json" if adapter else "config.json"
    if not (path / wanted).exists():
        kind = "a peft adapter" if adapter else "a model"
        raise ValueError(f"{label} {ref!r} holds no {wanted}: it is not {kind} folder")


def check_sources(spec: PairSpec) -> None:
    """Fail before serving or loading on sources that cannot load (ValueError saying what to do):
    an unbuilt zoo entry, a missing path, a folder that holds no model or adapter."""
    org = _organism(spec)
    if org is not None:
        from diffscope.organisms import registry

        refs = [("base", org.base, False), ("fine-tune", org.finetuned, False)]
        refs.append(("adapter", org.adapter, True))
        resolved = [(lbl, registry.resolve_ref(r, spec.size), a) for lbl, r, a in refs if r]
    else:
        refs = [("--base", spec.base, False), ("--finetuned", spec.finetuned, False)]
        refs.append(("--adapter", spec.adapter, True))
        resolved = [(lbl, str(r), a) for lbl, r, a in refs if r]
    for label, ref, adapter in resolved:
        _check_source(label, ref, adapter)


def investigator_view(spec: PairSpec) -> dict[str, Any]:
    """What an investigator may know about the pair (no loading, never the ground truth)."""
    org = _organism(spec)
    source = _default_source(spec, org)
    view: dict[str, Any] = dict(org.investigator_view()) if org is not None else {}
    view["pair"] = "a base model and its fine-tuned variant"
    world = source == DEFAULT_CORPUS or source.startswith(DEFAULT_CORPUS + ":")
    sampled = source == SAMPLED_CORPUS or source.startswith(SAMPLED_CORPUS + ":")
    view["corpus"] = (
        "the synthetic world corpus"
        if world
        else "text sampled from the base model"
        if sampled
        else "a user-provided corpus"
    )
    return view


@dataclass
class Workspace:
    """An opened pair with its probe corpus and its artifacts (what a server serves)."""

    spec: PairSpec
    pair: Any  # models.ModelPair (a stub in some tests)
    corpus: CorpusSpec
    artifacts: Artifacts
    view: dict[str, Any]

    @property
    def name(self) -> str:
        return str(getattr(self.pair, "name", self.spec.label))


def open_workspace(
    spec: PairSpec, progress: Callable[[float, str], None] | None = None
) -> Workspace:
    """Load the pair `spec` names and attach its probe corpus and cached artifacts."""
    from diffscope.organisms import registry

    if spec.remote:  # refused before any model work (no key: says how to set one)
        from diffscope.models.nnsight_backend import check_remote_workspace

        check_remote_workspace(spec.backend)
    opts: dict[str, Any] = {
        "dtype": spec.dtype,
        "device": spec.device,
        "trust_remote_code": spec.trust_remote_code,
    }
    if spec.device_map is not None:
        opts["device_map"] = spec.device_map
    org = _organism(spec)
    if org is not None:
        pair = registry.load_pair(org, size=spec.size, **opts)
    else:
        from diffscope.models import ModelPair

        pair = ModelPair.load(spec.base, spec.finetuned, adapter=spec.adapter, **opts)  # type: ignore[arg-type]
    corpus = corpus_spec(_default_source(spec, org), spec.windows)
    return Workspace(
        spec=spec,
        pair=pair,
        corpus=corpus,
        artifacts=Artifacts(pair, corpus, progress=progress, backend=spec.backend),
        view=investigator_view(spec),
    )
