"""The services container: providers (how each service is made) and :class:`Services`, which
builds each service once, on first use.

A provider is a class (its instance is ``services.<snake_case of class name>``, built once,
with constructor arguments resolved from other providers by type hint, or by parameter
name), a :func:`provide` spec (a value or factory under a chosen name), a plain function
(a factory named after the function), or any other object (an instance, named after its
class).
"""

from __future__ import annotations

import inspect
import re
import threading
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, overload

from .jobs.errors import ConfigurationError

T = TypeVar("T")
_MISSING: Any = object()


def snake_case(name: str) -> str:
    """``UserService`` → ``user_service``; ``HTTPClient`` → ``http_client``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


@dataclass(frozen=True)
class Provider:
    """How one service is made: exactly one of ``use_class``, ``use_factory``, ``use_value``."""

    name: str
    use_class: type | None = None
    use_factory: Callable[..., Any] | None = None
    use_value: Any = _MISSING
    provides: type | None = None

    def make(self, resolve: Callable[[Callable[..., Any], str], dict[str, Any]]) -> Any:
        if self.use_value is not _MISSING:
            return self.use_value
        target = self.use_class or self.use_factory
        assert target is not None
        return target(**resolve(target, self.name))


def provide(
    key: str | type,
    *,
    use_class: type | None = None,
    use_factory: Callable[..., Any] | None = None,
    use_value: Any = _MISSING,
) -> Provider:
    """A provider under a chosen name (or a class, whose snake_case name is used).

    >>> provide("clock", use_value=FakeClock())            # doctest: +SKIP
    >>> provide(EmailService, use_class=FakeEmailService)  # doctest: +SKIP
    """
    chosen = [x for x in (use_class, use_factory) if x is not None]
    if len(chosen) + (use_value is not _MISSING) != 1:
        raise ConfigurationError(
            f"provide({key!r}): give exactly one of use_class, use_factory, use_value"
        )
    if isinstance(key, type):
        return Provider(snake_case(key.__name__), use_class, use_factory, use_value, provides=key)
    provides = use_class or (type(use_value) if use_value is not _MISSING else None)
    return Provider(key, use_class, use_factory, use_value, provides=provides)


def _as_provider(entry: Any) -> Provider:
    if isinstance(entry, Provider):
        return entry
    if isinstance(entry, type):
        return Provider(snake_case(entry.__name__), use_class=entry, provides=entry)
    if inspect.isfunction(entry):
        returns = typing.get_type_hints(entry).get("return")
        return Provider(
            entry.__name__,
            use_factory=entry,
            provides=returns if isinstance(returns, type) else None,
        )
    return Provider(snake_case(type(entry).__name__), use_value=entry, provides=type(entry))


class _HasProviders(Protocol):
    @property
    def providers(self) -> tuple[Provider, ...]: ...


class _ModuleTree(Protocol):
    def walk(self) -> Iterable[_HasProviders]: ...


class Services:
    """The services of a module tree: ``services.user_service``, ``services.get(UserService)``.

    Each service is built on first use, once, and shared; safe to use from several threads.
    """

    def __init__(self, providers: Iterable[Provider]) -> None:
        self._providers: dict[str, Provider] = {}
        self._by_type: dict[type, str] = {}
        for provider in providers:
            # A later module (the importer) overrides what an imported module provides.
            self._providers[provider.name] = provider
            if provider.provides is not None:
                self._by_type[provider.provides] = provider.name
        self._instances: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._building: list[str] = []

    @classmethod
    def for_module(cls, module: _ModuleTree) -> Services:
        """The container of ``module`` and everything it imports."""
        return cls(p for m in module.walk() for p in m.providers)

    def names(self) -> list[str]:
        """Names of every service this container can build."""
        return sorted(self._providers)

    @overload
    def get(self, key: type[T]) -> T: ...
    @overload
    def get(self, key: str) -> Any: ...
    def get(self, key: str | type[T]) -> Any:
        """The service registered under a name, or provided for a class: typed by the class,
        ``services.get(UserService)`` is a ``UserService``."""
        if isinstance(key, type):
            name = self._by_type.get(key)
            if name is None:
                name = next((n for t, n in self._by_type.items() if issubclass(t, key)), None)
            if name is None:
                raise LookupError(f"no provider for {key.__name__}; services: {self.names()}")
            key = name
        instance = self._instances.get(key, _MISSING)
        if instance is not _MISSING:
            return instance
        with self._lock:
            if key in self._instances:
                return self._instances[key]
            provider = self._providers.get(key)
            if provider is None:
                raise LookupError(f"no service named {key!r}; services: {self.names()}")
            if key in self._building:
                cycle = " -> ".join([*self._building[self._building.index(key) :], key])
                raise ConfigurationError(f"circular provider dependency: {cycle}")
            self._building.append(key)
            try:
                instance = provider.make(self._resolve_args)
            finally:
                self._building.pop()
            self._instances[key] = instance
            return instance

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self.get(name)
        except LookupError as exc:
            raise AttributeError(str(exc)) from None

    def __getitem__(self, key: str | type) -> Any:
        return self.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._providers or key in self._by_type

    def _resolve_args(self, target: Callable[..., Any], provider_name: str) -> dict[str, Any]:
        init = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
        try:
            hints = typing.get_type_hints(init)
        except Exception:  # unresolvable forward references: fall back to names only
            hints = {}
        kwargs: dict[str, Any] = {}
        params = list(inspect.signature(target).parameters.values())
        for param in params:
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            hint = hints.get(param.name)
            if isinstance(hint, type) and hint in self:
                kwargs[param.name] = self.get(hint)
            elif param.name in self._providers:
                kwargs[param.name] = self.get(param.name)
            elif param.name == "services":
                kwargs[param.name] = self
            elif param.default is param.empty:
                wanted = hint.__name__ if isinstance(hint, type) else repr(hint)
                raise ConfigurationError(
                    f"cannot build service {provider_name!r}: no provider for parameter "
                    f"{param.name!r} ({wanted}); services: {self.names()}"
                )
        return kwargs
