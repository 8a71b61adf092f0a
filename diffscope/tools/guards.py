"""Guards every tool shares: strict argument types and bounded names in messages.

- `strict_types(annotation)` rewrites a tool argument's type so that an integer or float argument
  takes only a JSON number (`true` and `"5"` are refused; `5.0` still counts as the integer 5, a
  fractional number does not) and a boolean takes only `true` or `false`. Field bounds and
  descriptions are kept, so the MCP input schema does not change.
- `shorten(text)` and `name_list(names)` keep what an error message repeats from the caller's
  input (a tool or argument name, a list of unknown names) to a few short items.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

MAX_NAME_CHARS = 40
MAX_NAMES = 5


def _json_number(value: Any) -> Any:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise PydanticCustomError(
            "json_number", "must be a JSON number, not {kind}", {"kind": _kind(value)}
        )
    return value


def _json_bool(value: Any) -> Any:
    if value is not None and not isinstance(value, bool):
        raise PydanticCustomError(
            "json_bool", "must be true or false, not {kind}", {"kind": _kind(value)}
        )
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return f"a {type(value).__name__}"


# None passes both: whether null is allowed is the annotation's own business
NUMBER_ONLY = BeforeValidator(_json_number)
BOOL_ONLY = BeforeValidator(_json_bool)


def _split(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    if get_origin(annotation) is Annotated:
        inner, *metadata = get_args(annotation)
        return inner, tuple(metadata)
    return annotation, ()


def _scalar(annotation: Any) -> Any:
    """int, float or bool when `annotation` is one of them (or one of them or None)."""
    base, _ = _split(annotation)
    if base in (int, float, bool):
        return base
    if get_origin(base) in (typing.Union, types.UnionType):
        members = [_split(arg)[0] for arg in get_args(base) if arg is not type(None)]
        if len(members) == 1 and members[0] in (int, float, bool):
            return members[0]
    return None


def strict_types(annotation: Any) -> Any:
    """`annotation` with every int and float taking only JSON numbers and every bool only booleans.

    A scalar (or optional scalar) gets a before-validator appended to its metadata, which keeps
    its Field bounds and JSON schema as they were; unions and generic containers are walked;
    Literal and models are left alone.
    """
    scalar = _scalar(annotation)
    if scalar is not None:
        return Annotated[annotation, BOOL_ONLY if scalar is bool else NUMBER_ONLY]
    base, metadata = _split(annotation)
    origin = get_origin(base)
    if origin is None or origin is Literal:
        return annotation
    args = get_args(base)
    rewritten = tuple(strict_types(arg) for arg in args)
    if rewritten == args:
        return annotation
    if origin is typing.Union or origin is types.UnionType:
        new: Any = typing.Union[rewritten]  # noqa: UP007 (a runtime union of computed members)
    else:
        try:
            new = origin[rewritten]
        except TypeError:  # a generic that cannot be subscripted again: leave it as it was
            return annotation
    return Annotated[(new, *metadata)] if metadata else new


def shorten(text: Any, limit: int = MAX_NAME_CHARS) -> str:
    """`text` cut to about `limit` characters (saying how long it was), control characters
    escaped."""
    shown = str(text).encode("unicode_escape").decode("ascii")
    if len(shown) <= limit:
        return shown
    return f"{shown[: limit - 3]}... ({len(str(text))} chars)"


def name_list(names: Iterable[Any], limit: int = MAX_NAMES) -> str:
    """At most `limit` shortened names, then how many more there were."""
    items = list(names)
    shown = ", ".join(shorten(name) for name in items[:limit])
    if len(items) > limit:
        shown += f" and {len(items) - limit} more"
    return shown
