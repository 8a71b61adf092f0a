"""The tool registry: `ToolDef`, the `@tool` decorator, the default registry `TOOLS` and profiles.

A tool is a typed function whose first parameter is the `ToolContext`:

    @tool(tags=("kl",), cost=lambda a: Charge(model_queries=len(a["prompts"])))
    def kl_probe(
        ctx: ToolContext,
        prompts: Annotated[list[str], Field(min_length=1, max_length=16, description="...")],
        k: Annotated[int, Field(ge=1, le=50, description="...")] = 10,
    ) -> KLProbeResult:
        \"\"\"Per-token KL(ft || base) on the prompts; the positions that changed most.\"\"\"

It returns its pydantic result model, or `(result, [Image | png bytes, ...])` to add images.
`ToolDef.run` is the one wrapper every call goes through (MCP server or in-process): it waits for
the pair, charges the budget, holds the model lock and normalises the output.

Profiles choose which tools a server exposes: `blackbox` (only `query_models`), `method` (all),
and one per method tag (`query_models` plus the tools with that tag). A comma-separated name is
the union of those profiles.
"""

from __future__ import annotations

import inspect
import math
import time
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from diffscope.tools.base import (
    Charge,
    Image,
    ProgressHook,
    ToolContext,
    ToolError,
    describe_validation_error,
    log,
)
from diffscope.tools.guards import strict_types

QUERY_TOOL = "query_models"
METHOD_TAGS = ("neurons", "kl", "diffmining", "lens", "steering", "amplification", "crosscoder")
RESERVED_ARGS = frozenset({"mcp_context"})
LOAD_WAIT_REPORT_S = 2.0

ChargeRule = Charge | Callable[[Mapping[str, Any]], Charge]
ProfileRule = set[str] | frozenset[str] | Callable[["ToolRegistry"], set[str]]


@dataclass(frozen=True)
class ToolOutput:
    """A tool's normalised answer: the structured result and any images."""

    result: BaseModel
    images: list[Image] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    """Lines the caller should see beside the result (e.g. a damaged cache entry was rebuilt)."""


@dataclass(frozen=True)
class ToolDef:
    """One registered tool: its function, argument parameters, result model and charge rule."""

    name: str
    fn: Callable[..., Any]
    result: type[BaseModel]
    description: str
    params: tuple[inspect.Parameter, ...]
    tags: frozenset[str] = frozenset()
    cost: ChargeRule | None = None
    title: str | None = None
    idempotent: bool = True
    arg_model: type[BaseModel] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields: dict[str, Any] = {}
        for param in self.params:
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[param.name] = (param.annotation, default)
        model = create_model(
            f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
        )
        object.__setattr__(self, "arg_model", model)

    @property
    def summary(self) -> str:
        """The docstring's first line."""
        return self.description.splitlines()[0]

    def validate(self, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Check raw arguments against the signature; ToolError naming each bad argument."""
        try:
            model = self.arg_model.model_validate(dict(arguments or {}))
        except ValidationError as exc:
            raise ToolError(describe_validation_error(self.name, exc)) from exc
        return {name: getattr(model, name) for name in type(model).model_fields}

    def charge_for(self, args: Mapping[str, Any]) -> Charge:
        """What a call with these (validated) arguments costs beyond the call itself."""
        if self.cost is None:
            return Charge()
        if isinstance(self.cost, Charge):
            return self.cost
        return self.cost(args)

    def run(
        self, ctx: ToolContext, args: Mapping[str, Any], *, progress: ProgressHook | None = None
    ) -> ToolOutput:
        """Wait for the pair, charge the budget, run under the model lock, normalise the output.

        `args` must already be validated (see `validate` / `call`).
        """
        previous = ctx.set_progress_hook(progress)
        try:
            waited = 0.0
            while not ctx.wait_ready(LOAD_WAIT_REPORT_S):
                waited += LOAD_WAIT_REPORT_S
                ctx.progress(0.0, f"waiting for the models to load ({waited:.0f} s)")
            _ = ctx.pair  # a failed load is reported by every call
            charge = self.charge_for(args)
            ctx.budgets.charge(
                tool_calls=1, model_queries=charge.model_queries, tokens=charge.tokens
            )
            with ctx.lock, ctx.collecting_warnings() as warned:
                start = time.perf_counter()
                try:
                    raw = self.fn(ctx, **args)
                except ToolError as exc:
                    if not warned:
                        raise
                    raise ToolError("\n".join([str(exc), *warning_lines(warned)])) from exc
                elapsed = time.perf_counter() - start
        finally:
            ctx.set_progress_hook(previous)
        output = self._normalise(raw)
        bad = non_finite_field(output.result)
        if bad is not None:
            raise ToolError(
                f"{self.name} computed a non-finite value ({bad}); the models give NaN or inf "
                "here (check their weights and dtype), so there is no valid answer to show"
            )
        if warned:
            output = ToolOutput(output.result, output.images, tuple(warned))
        if elapsed > 30:
            log.warning("tool %s took %.1f s (clients time out at 60 s)", self.name, elapsed)
        return output

    def call(
        self,
        ctx: ToolContext,
        arguments: Mapping[str, Any] | None = None,
        *,
        progress: ProgressHook | None = None,
        **kwargs: Any,
    ) -> ToolOutput:
        """Validate and run in-process (what the MCP server does, without MCP)."""
        return self.run(ctx, self.validate({**(arguments or {}), **kwargs}), progress=progress)

    def _normalise(self, raw: Any) -> ToolOutput:
        images: list[Image] = []
        if isinstance(raw, tuple):
            if len(raw) != 2:
                raise TypeError(
                    f"tool {self.name} returned a tuple of {len(raw)}; want (result, images)"
                )
            raw, extra = raw
            for item in extra:
                if isinstance(item, Image):
                    images.append(item)
                elif isinstance(item, bytes | bytearray):
                    images.append(Image(bytes(item)))
                else:
                    raise TypeError(
                        f"tool {self.name} returned an image of type {type(item).__name__}; "
                        "want Image or PNG bytes"
                    )
        if isinstance(raw, self.result):
            return ToolOutput(raw, images)
        if isinstance(raw, Mapping):
            return ToolOutput(self.result.model_validate(raw), images)
        raise TypeError(
            f"tool {self.name} returned {type(raw).__name__}; want {self.result.__name__}"
        )


def warning_lines(warnings: Iterable[str]) -> list[str]:
    """Each warning as the line a tool's answer shows: `warning: ...`."""
    return [f"warning: {w}" for w in warnings]


def non_finite_field(result: BaseModel) -> str | None:
    """The first float of a result that is NaN or inf, as `field.path = value`, or None."""
    stack: list[tuple[str, Any]] = [("", result.model_dump(mode="python"))]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where.lstrip('.') or 'result'} = {value}"
        if isinstance(value, Mapping):
            stack.extend((f"{where}.{k}", v) for k, v in value.items())
        elif isinstance(value, list | tuple):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
    return None


def _result_model(fn: Callable[..., Any], annotation: Any) -> type[BaseModel]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is tuple:
        args = get_args(annotation)
        if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0]
    raise TypeError(
        f"tool {fn.__name__} must be annotated to return a pydantic model "
        "(or tuple[Model, list[Image]]), or pass result=Model to @tool"
    )


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """Resolved annotations; names from the function's closure count (tools defined in a body)."""
    closure = fn.__closure__ or ()
    local_ns: dict[str, Any] = {}
    for name, cell in zip(fn.__code__.co_freevars, closure, strict=True):
        try:
            local_ns[name] = cell.cell_contents
        except ValueError:  # an empty cell
            continue
    try:
        return typing.get_type_hints(fn, localns=local_ns, include_extras=True)
    except NameError as exc:
        raise TypeError(f"tool {fn.__name__}: cannot resolve its annotations ({exc})") from exc


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    tags: Iterable[str] = (),
    cost: ChargeRule | None = None,
    result: type[BaseModel] | None = None,
    title: str | None = None,
    idempotent: bool = True,
) -> ToolDef:
    """Build a ToolDef from a typed function (see the module docstring for the shape)."""
    tool_name = name or fn.__name__
    doc = inspect.cleandoc(fn.__doc__ or "")
    if not doc:
        raise TypeError(f"tool {tool_name} needs a docstring; its first line is the description")
    hints = _type_hints(fn)
    signature = inspect.signature(fn)
    params = list(signature.parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(f"tool {tool_name}: the first parameter must be the ToolContext")
    args: list[inspect.Parameter] = []
    for param in params[1:]:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name}: *args/**kwargs are not allowed ({param.name})")
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise TypeError(f"tool {tool_name}: positional-only argument {param.name}")
        if param.name.startswith("_") or param.name in RESERVED_ARGS:
            raise TypeError(f"tool {tool_name}: argument name {param.name!r} is reserved")
        if param.name not in hints:
            raise TypeError(f"tool {tool_name}: argument {param.name} needs a type annotation")
        # strict scalars: an int argument refuses `true` and "5" (see tools.guards)
        annotation = strict_types(hints[param.name])
        args.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=annotation))
    model = result or _result_model(fn, hints.get("return"))
    return ToolDef(
        name=tool_name,
        fn=fn,
        result=model,
        description=doc,
        params=tuple(args),
        tags=frozenset(tags),
        cost=cost,
        title=title,
        idempotent=idempotent,
    )


def all_tools(registry: ToolRegistry) -> set[str]:
    """Profile rule: every registered tool."""
    return set(registry)


def with_tag(tag: str) -> Callable[[ToolRegistry], set[str]]:
    """Profile rule: `query_models` plus the tools tagged `tag`."""

    def rule(registry: ToolRegistry) -> set[str]:
        return {QUERY_TOOL} | registry.tagged(tag)

    rule.__name__ = f"with_tag_{tag}"
    return rule


PROFILES: dict[str, ProfileRule] = {
    "blackbox": {QUERY_TOOL},
    "method": all_tools,
    **{tag: with_tag(tag) for tag in METHOD_TAGS},
}


class ToolRegistry(dict[str, ToolDef]):
    """A plain dict of tool name -> ToolDef, with a decorator to fill it and profile lookup.

    `profiles` defaults to the module's `PROFILES`; any tag used by a registered tool is a profile
    too (query_models plus the tools with that tag).
    """

    def __init__(self, profiles: Mapping[str, ProfileRule] | None = None) -> None:
        super().__init__()
        self._profiles = profiles

    def tool(
        self,
        name: str | None = None,
        *,
        tags: Iterable[str] = (),
        cost: ChargeRule | None = None,
        result: type[BaseModel] | None = None,
        title: str | None = None,
        idempotent: bool = True,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: register the function as a tool and return it unchanged."""
        if callable(name):
            raise TypeError("use @tool() (with parentheses), not @tool")

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(
                make_tool(
                    fn,
                    name=name,
                    tags=tags,
                    cost=cost,
                    result=result,
                    title=title,
                    idempotent=idempotent,
                )
            )
            return fn

        return decorator

    def add(self, tool_def: ToolDef) -> ToolDef:
        """Register a ToolDef; a second tool with the same name is an error."""
        if tool_def.name in self:
            raise ValueError(f"a tool named {tool_def.name!r} is already registered")
        self[tool_def.name] = tool_def
        return tool_def

    def tagged(self, tag: str) -> set[str]:
        """Names of the tools carrying `tag`."""
        return {name for name, tool_def in self.items() if tag in tool_def.tags}

    @property
    def profiles(self) -> dict[str, ProfileRule]:
        """Profile name -> rule: the configured profiles plus one per tag in use."""
        configured = PROFILES if self._profiles is None else self._profiles
        merged: dict[str, ProfileRule] = dict(configured)
        for tool_def in self.values():
            for tag in tool_def.tags:
                merged.setdefault(tag, with_tag(tag))
        return merged

    def profile_names(self, profile: str) -> set[str]:
        """Tool names a profile asks for (some may not be registered here)."""
        profiles = self.profiles
        names: set[str] = set()
        for part in (p.strip() for p in profile.split(",")):
            if part not in profiles:
                valid = ", ".join(sorted(profiles))
                raise ValueError(f"unknown profile {part!r}; valid profiles: {valid}")
            rule = profiles[part]
            names |= set(rule) if isinstance(rule, set | frozenset) else rule(self)
        return names

    def tools_for_profile(self, profile: str) -> list[ToolDef]:
        """The registered tools in a profile, in registration order."""
        names = self.profile_names(profile)
        return [tool_def for name, tool_def in self.items() if name in names]


TOOLS = ToolRegistry()
"""The default registry; the tool modules in diffscope/tools/ register into it."""


def tool(
    name: str | None = None,
    *,
    tags: Iterable[str] = (),
    cost: ChargeRule | None = None,
    result: type[BaseModel] | None = None,
    title: str | None = None,
    idempotent: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering into the default registry `TOOLS` (see `ToolRegistry.tool`)."""
    return TOOLS.tool(name, tags=tags, cost=cost, result=result, title=title, idempotent=idempotent)


def tools_for_profile(profile: str, registry: ToolRegistry | None = None) -> list[ToolDef]:
    """The tools of a profile in `registry` (default: `TOOLS`); ValueError lists valid profiles."""
    return (TOOLS if registry is None else registry).tools_for_profile(profile)
