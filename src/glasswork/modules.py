"""Modules: named groups of providers (services) and jobs, which may import other modules.

The services container they feed lives in :mod:`glasswork.services`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .jobs.definition import JobDefinition
from .jobs.errors import ConfigurationError
from .services import Provider, Services, _as_provider, provide, snake_case

__all__ = ["Module", "Provider", "Services", "define_module", "provide", "snake_case"]


@dataclass(frozen=True, eq=False)
class Module:
    """A named group of providers and jobs, which may import other modules."""

    name: str
    providers: tuple[Provider, ...] = ()
    jobs: tuple[JobDefinition[Any], ...] = ()
    imports: tuple[Module, ...] = ()

    def walk(self) -> Iterator[Module]:
        """This module and every module it imports, each once, imports first."""
        seen: set[int] = set()

        def visit(module: Module) -> Iterator[Module]:
            if id(module) in seen:
                return
            seen.add(id(module))
            for imported in module.imports:
                yield from visit(imported)
            yield module

        yield from visit(self)

    def __repr__(self) -> str:
        return f"<Module {self.name!r}: {len(self.providers)} providers, {len(self.jobs)} jobs>"


def define_module(
    name: str,
    providers: Sequence[Any] = (),
    jobs: Sequence[JobDefinition[Any]] = (),
    imports: Sequence[Module] = (),
) -> Module:
    """Define a module.

    >>> WorkerModule = define_module(                       # doctest: +SKIP
    ...     name="worker", providers=[UserService, EmailService], jobs=[send_welcome_email])
    """
    for imported in imports:
        if not isinstance(imported, Module):
            raise ConfigurationError(
                f"module {name!r}: imports must be modules from define_module, got {imported!r}"
            )
    return Module(
        name=name,
        providers=tuple(_as_provider(p) for p in providers),
        jobs=tuple(jobs),
        imports=tuple(imports),
    )
