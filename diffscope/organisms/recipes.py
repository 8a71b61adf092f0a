"""Finding a toy organism's recipe, and what its zoo stage depends on.

A recipe named `NAME` (an organism's `zoo.recipe`) is the module `diffscope.organisms.builtin.NAME`,
beside `NAME.yaml`; it defines `RECIPE`. `recipe_modules(NAME)` lists the modules the recipe's
code comes from (its own module and the diffscope modules it uses, transitively), so that a zoo
stage key hashes exactly what that organism depends on and editing one recipe rebuilds only the
organisms that use it.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from types import ModuleType

from diffscope.organisms import builtin
from diffscope.organisms.checks import Recipe

PACKAGE = builtin.__name__


def recipe_names() -> list[str]:
    """The names of the built-in recipes (the modules of `organisms/builtin/`)."""
    return sorted(info.name for info in pkgutil.iter_modules(builtin.__path__))


def recipe_module(name: str) -> ModuleType:
    """The module holding recipe `name`, or a ValueError listing the known ones."""
    if name not in recipe_names():
        raise ValueError(f"unknown zoo recipe {name!r}; known: {', '.join(recipe_names())}")
    return importlib.import_module(f"{PACKAGE}.{name}")


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`, or a ValueError listing the known ones."""
    recipe = getattr(recipe_module(name), "RECIPE", None)
    if not isinstance(recipe, Recipe):
        raise ValueError(f"{PACKAGE}.{name} defines no RECIPE")
    return recipe


def all_recipes() -> dict[str, Recipe]:
    """Every built-in recipe by name."""
    return {name: get_recipe(name) for name in recipe_names()}


def _used_modules(module: ModuleType) -> set[str]:
    """The diffscope modules that `module`'s top-level names (functions, classes, modules,
    instances) come from."""
    found: set[str] = set()
    for value in vars(module).values():
        owner: object
        if isinstance(value, ModuleType):
            owner = value.__name__
        else:
            owner = getattr(value, "__module__", None) or getattr(type(value), "__module__", "")
        if isinstance(owner, str) and owner.startswith("diffscope.") and owner != module.__name__:
            found.add(owner)
    return found


def module_closure(name: str) -> tuple[str, ...]:
    """`name` and every diffscope module it uses, transitively, sorted."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        module = sys.modules.get(current) or importlib.import_module(current)
        todo.extend(_used_modules(module) - seen)
    return tuple(sorted(seen))


def recipe_modules(name: str) -> tuple[str, ...]:
    """The modules recipe `name`'s data and check come from (its own module first)."""
    own = recipe_module(name).__name__
    return (own, *(m for m in module_closure(own) if m != own))
