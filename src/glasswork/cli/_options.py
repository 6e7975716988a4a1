"""Options that may also come from the environment.

Every option of every command has a ``GLASSWORK_*`` variable, named the way click's
``auto_envvar_prefix`` names them: ``GLASSWORK_<COMMAND>_<OPTION>``
(``GLASSWORK_WORKER_CONCURRENCY``, ``GLASSWORK_DLQ_LIST_LIMIT``), except the options every
command shares, ``GLASSWORK_APP`` and ``GLASSWORK_DRIVER``. The command line wins over the
environment, the environment over the default. Each ``--help`` shows the variable.

argparse does the parsing; :func:`option` registers an option with no default of its own
(so what the command line gave is what the namespace holds), and :func:`from_environment`
fills in the rest after parsing: from the variable, converted and checked as the option's
own value would be, or from the default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..jobs.drivers.urls import boolean
from ._errors import UsageError

PREFIX = "GLASSWORK"
#: The options every command shares, with variables of their own.
SHARED = {"--app": "GLASSWORK_APP", "--driver": "GLASSWORK_DRIVER"}


@dataclass(frozen=True)
class EnvOption:
    """One option and the variable it may come from."""

    action: argparse.Action
    variable: str
    default: Any
    #: The other options of its mutually exclusive group (their dests).
    exclusive: tuple[str, ...] = ()


@dataclass(frozen=True)
class RequiredChoice:
    """A mutually exclusive group one of whose options must be given (on the command line
    or in the environment)."""

    parser: argparse.ArgumentParser
    dests: tuple[str, ...]
    flags: tuple[str, ...]


def variable_name(parser: argparse.ArgumentParser, flag: str) -> str:
    """The variable of ``flag`` in the command ``parser`` is (its ``prog``, less the
    program name): ``GLASSWORK_DLQ_LIST_LIMIT`` for ``glasswork dlq list --limit``."""
    if flag in SHARED:
        return SHARED[flag]
    command = parser.prog.split()[1:]
    words = [PREFIX, *command, flag.lstrip("-")]
    return "_".join(words).upper().replace("-", "_")


def option(
    parser: argparse.ArgumentParser,
    *flags: str,
    help: str,
    default: Any = None,
    shown: str | None = None,
    group: Any = None,
    **kwargs: Any,
) -> argparse.Action:
    """Add an option to the command ``parser`` (to its ``group``, when given), with its
    variable and its default (or ``shown``, the default as a user writes it) in the help."""
    variable = variable_name(parser, flags[-1])
    if shown is None and default not in (None, False, []):
        shown = str(default)
    shown = f"; default: {shown}" if shown else ""
    action: argparse.Action = (group or parser).add_argument(
        *flags,
        default=argparse.SUPPRESS,
        help=f"{help} [env var: {variable}{shown}]",
        **kwargs,
    )
    options: list[EnvOption] = parser.get_default("env_options") or []
    options.append(EnvOption(action, variable, default))
    parser.set_defaults(env_options=options)
    return action


def exclusive(
    parser: argparse.ArgumentParser, actions: Sequence[argparse.Action], *, required: bool = False
) -> None:
    """Mark ``actions`` (options of one mutually exclusive group, made with
    ``required=False``: argparse cannot see the environment) as excluding each other's
    variables; with ``required``, one of them must be given somewhere."""
    dests = tuple(a.dest for a in actions)
    options: list[EnvOption] = parser.get_default("env_options")
    parser.set_defaults(
        env_options=[
            EnvOption(
                o.action, o.variable, o.default, tuple(d for d in dests if d != o.action.dest)
            )
            if o.action.dest in dests
            else o
            for o in options
        ]
    )
    if required:
        flags = tuple(a.option_strings[0] for a in actions)
        parser.set_defaults(required_choice=RequiredChoice(parser, dests, flags))


def from_environment(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> None:
    """Fill in every option the command line did not give: from its variable (an empty
    one counts as unset), else its default. A variable that is not a valid value, or two
    set for options that exclude each other, is a :class:`UsageError` naming them."""
    options: list[EnvOption] = getattr(args, "env_options", None) or []
    given = {o.action.dest for o in options if hasattr(args, o.action.dest)}
    taken: dict[str, str] = {}  # dest -> the variable it came from
    for o in options:
        dest = o.action.dest
        if dest in given:
            continue
        raw = environ.get(o.variable, "")
        if raw and not given.intersection(o.exclusive):
            clash = [taken[d] for d in o.exclusive if d in taken]
            if clash:
                raise UsageError(f"{clash[0]} and {o.variable} are both set: set one of them")
            setattr(args, dest, _convert(o, raw))
            taken[dest] = o.variable
        else:
            setattr(args, dest, o.default)
    args.from_environment = set(taken)
    choice: RequiredChoice | None = getattr(args, "required_choice", None)
    if choice is not None and not any(getattr(args, d) for d in choice.dests):
        choice.parser.error(f"one of the arguments {' '.join(choice.flags)} is required")


def _convert(o: EnvOption, raw: str) -> Any:
    action = o.action
    try:
        if action.nargs == 0:  # a flag
            return boolean(raw.strip())
        if isinstance(action, argparse._AppendAction):
            return [_value(action, item) for item in raw.split()]
        return _value(action, raw)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
        if action.nargs == 0:
            message = "use true or false (also 1/0, yes/no)"
        elif isinstance(exc, argparse.ArgumentTypeError):
            message = str(exc)
        else:
            name = getattr(action.type, "__name__", "value")
            message = f"invalid {name} value"
        raise UsageError(f"{o.variable}={raw!r}: {message}") from None


def _value(action: argparse.Action, text: str) -> Any:
    value = action.type(text) if callable(action.type) else text
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {choices})")
    return value
