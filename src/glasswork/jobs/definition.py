"""Job definitions: ``define_job``, ``define_periodic_job``, retry policies and unique keys."""

from __future__ import annotations

import inspect
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from types import UnionType
from typing import Any, Generic, overload

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python
from typing_extensions import TypeVar

from .context import JobContext
from .drivers.records import DEFAULT_RESULT_TTL
from .durations import Delay, parse_duration, positive_seconds
from .errors import ConfigurationError, InvalidJobPayloadError
from .fairness import check_fairness_key, fairness_key_of
from .idempotency.options import Idempotency
from .limits import JobLimits, RateLimit, check_concurrency, limits_of, parse_rate_limit
from .schedules import Catchup, PeriodicPolicy

P = TypeVar("P")
#: What the handler returns (an ``async def`` handler: what it awaits to); Any by default, so
#: ``JobDefinition[Payload]`` still means a job of any result.
R = TypeVar("R", default=Any)

#: A sync handler of payload type ``P`` returning ``R``: ``(payload, ctx)``, ``(payload)`` or
#: ``()``.
Handler = Callable[[P, JobContext], R] | Callable[[P], R] | Callable[[], R]
#: An ``async def`` handler of payload type ``P`` whose coroutine returns ``R``.
AsyncHandler = (
    Callable[[P, JobContext], Awaitable[R]]
    | Callable[[P], Awaitable[R]]
    | Callable[[], Awaitable[R]]
)
#: The priorities every driver that has them can store (a 32-bit integer).
PRIORITY_RANGE = range(-(2**31), 2**31)
#: ``unique=``: payload -> key, or ``{"key": payload -> key}``.
UniqueOption = Callable[[P], object] | Mapping[str, Callable[[P], object]] | None
#: ``group_id=``: a FIFO message group, or payload -> group.
GroupOption = str | Callable[[P], object] | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing job runs and how long it waits between runs.

    ``max_attempts`` counts runs, the first included (3 means two retries). Delays grow
    exponentially from ``backoff`` seconds, capped at ``max_backoff``; ``jitter`` spreads
    them over the upper half of each step so retries of a burst do not arrive together.

    ``dead_letter_on`` and ``retry_on`` (exception classes, as ``except`` takes them) sort
    failures: an error of ``dead_letter_on`` is dead-lettered at once, one of ``retry_on``
    retried until ``max_attempts``; an error in neither is retried, as by default. When
    both match, the class nearer the error's own wins (``retry_on=(Exception,)``,
    ``dead_letter_on=(ValueError,)`` dead-letters a ``ValueError``; the other way round
    retries it); an exact tie dead-letters. :class:`~glasswork.jobs.TransientJobError` and
    :class:`~glasswork.jobs.PermanentJobError` keep their meaning whatever the lists say.
    """

    max_attempts: int = 3
    backoff: float = 10.0
    max_backoff: float = 900.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = ()
    dead_letter_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(
                f"retry max_attempts must be at least 1, got {self.max_attempts}"
            )
        if self.backoff < 0 or self.max_backoff < 0:
            raise ConfigurationError("retry backoff and max_backoff cannot be negative")
        for name in ("retry_on", "dead_letter_on"):
            object.__setattr__(self, name, _exception_classes(name, getattr(self, name)))

    def dead_letters(self, error: BaseException) -> bool:
        """Whether ``error`` is one of ``dead_letter_on`` (and not more closely one of
        ``retry_on``): see the class docstring."""
        dead = _closeness(type(error), self.dead_letter_on)
        if dead is None:
            return False
        retry = _closeness(type(error), self.retry_on)
        return retry is None or dead <= retry

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before the run after failed run number ``attempt`` (1-based)."""
        step = min(self.max_backoff, self.backoff * 2.0 ** min(attempt - 1, 32))
        if self.jitter:
            return step / 2 + random.random() * step / 2
        return step

    @classmethod
    def from_option(cls, option: RetryOption) -> RetryPolicy | None:
        """Read ``define_job(retry=...)``: None/True → defaults, False → no retries."""
        if option is None or option is True:
            return cls()
        if option is False:
            return None
        if isinstance(option, RetryPolicy):
            return option
        if isinstance(option, Mapping):
            allowed = {f.name for f in fields(cls)}
            unknown = set(option) - allowed
            if unknown:
                raise ConfigurationError(
                    f"unknown retry setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
                )
            return cls(**option)
        raise ConfigurationError(
            f"retry must be a mapping, RetryPolicy, True or False, not {option!r}"
        )


#: ``retry=``: a mapping of :class:`RetryPolicy` settings, a policy, True (defaults) or False.
RetryOption = RetryPolicy | Mapping[str, Any] | bool | None


def _exception_classes(name: str, value: object) -> tuple[type[BaseException], ...]:
    """``retry_on``/``dead_letter_on`` as a tuple: an exception class or a tuple (or list)
    of them, as ``except`` takes them."""
    classes = value if isinstance(value, tuple | list) else (value,)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ConfigurationError(
                f"retry {name} must be an exception class or a tuple of exception classes, "
                f"got {value!r} ({cls!r} is not an exception class)"
            )
    return tuple(classes)


def _closeness(error: type[BaseException], classes: tuple[type[BaseException], ...]) -> int | None:
    """How near ``error``'s own class the nearest of ``classes`` it belongs to is (0: that
    very class), or None when it belongs to none of them."""
    mro = error.__mro__
    found = [mro.index(c) if c in mro else len(mro) for c in classes if issubclass(error, c)]
    return min(found, default=None)


@dataclass(frozen=True, eq=False)
class JobDefinition(Generic[P, R]):
    """A registered job: made by :func:`define_job` or :func:`define_periodic_job`.

    ``P`` is the payload type its schema validates to (a model class gives its instances):
    ``JobService.enqueue(job, payload)`` takes a ``P``, and :meth:`validate` turns any
    JSON-like value (a dict from a request body, say) into one. ``R`` is what its handler
    returns (what an ``async def`` one returns when awaited), what ``handle.wait()`` gives
    back; ``JobDefinition[P]`` is ``JobDefinition[P, Any]``.
    """

    name: str
    handler: Callable[..., Any]
    queue: str | None = None
    schema: Any = None
    retry: RetryPolicy | None = RetryPolicy()
    unique_key: Callable[[P], object] | None = None
    group_id: GroupOption[P] = None
    periodic: bool = False
    schedule: str | None = None
    timeout: float | None = None
    idempotency: Idempotency | None = None
    #: Seconds its status and result are kept after it ends (0: none).
    result_ttl: float = DEFAULT_RESULT_TTL
    #: Higher runs first within its queue (drivers that claim by priority); 0 by default.
    priority: int = 0
    #: Catch-up and overlap of a periodic job (None for other jobs).
    periodic_policy: PeriodicPolicy | None = None
    #: At most this many starts in any window, across every worker (None: unlimited).
    rate_limit: RateLimit | None = None
    #: At most this many running at once per :attr:`concurrency_key` (None: unlimited).
    concurrency_limit: int | None = None
    #: payload -> the key concurrency is counted by (None: the job as a whole).
    concurrency_key: Callable[[P], object] | None = None
    #: payload -> the tenant its queue's jobs are claimed round-robin by (None: not fair).
    fairness_key: Callable[[P], object] | None = None

    def __post_init__(self) -> None:
        adapter: TypeAdapter[Any] | None
        if self.schema is None or isinstance(self.schema, TypeAdapter):
            adapter = self.schema
        else:
            adapter = TypeAdapter(self.schema)
        object.__setattr__(self, "_adapter", adapter)
        object.__setattr__(self, "is_async", _is_async(self.handler))
        object.__setattr__(self, "_call", _adapt_arity(self.name, self.handler))
        object.__setattr__(self, "limits", limits_of(self.rate_limit, self.concurrency_limit))

    # Derived in __post_init__.
    #: Its rate and concurrency limits together (None: it has none, and pays nothing).
    limits: JobLimits | None = field(init=False, default=None)
    _adapter: TypeAdapter[Any] | None = field(init=False, repr=False, default=None)
    is_async: bool = field(init=False, default=False)
    _call: Callable[[Any, JobContext], Any] = field(init=False, repr=False, default=None)  # type: ignore[assignment]
    # What result_from validates with: None until first used, then _NO_ADAPTER or one.
    _results: Any = field(init=False, repr=False, default=None)

    def validate(self, payload: object) -> P:
        """Validate ``payload`` against the schema, returning the payload type (a model
        instance for a model schema); raises :class:`InvalidJobPayloadError`.

        This is also the explicit way to enqueue a plain dict on a typed job:
        ``jobs.enqueue(job, job.validate({"user_id": "123"}))``."""
        if self._adapter is None:
            return payload  # type: ignore[return-value]
        try:
            # The adapter's validator itself: what validate_python calls, minus a frame.
            return self._adapter.validator.validate_python(payload)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise InvalidJobPayloadError(
                self.name, [dict(e) for e in exc.errors(include_url=False)]
            ) from None

    def to_wire(self, value: P) -> Any:
        """The JSON form of a validated payload, as it travels in the message."""
        try:
            if self._adapter is not None:
                return self._adapter.dump_python(value, mode="json")
            return to_jsonable_python(value)
        except PydanticSerializationError as exc:
            raise InvalidJobPayloadError(
                self.name, [], f"payload is not JSON-serializable: {exc}"
            ) from None

    def unique_key_for(self, value: P) -> str | None:
        """The unique key of a validated payload, or None for jobs without one."""
        if self.unique_key is None:
            return None
        key = self.unique_key(value)
        return None if key is None else str(key)

    def group_id_for(self, value: P) -> str | None:
        """The FIFO message group of a validated payload (None: the driver's default)."""
        if self.group_id is None or isinstance(self.group_id, str):
            return self.group_id
        group = self.group_id(value)
        return None if group is None else str(group)

    def concurrency_key_for(self, value: P) -> str | None:
        """The concurrency key of a validated payload (None: counted per job)."""
        if self.concurrency_key is None:
            return None
        key = self.concurrency_key(value)
        return None if key is None else str(key)

    def fairness_key_for(self, value: P) -> str | None:
        """The fairness key of a validated payload (None: the group of jobs without one);
        an :class:`InvalidJobPayloadError` naming the job when the key function raises or
        returns what no driver can use (see :func:`~glasswork.jobs.fairness.fairness_key_of`)."""
        if self.fairness_key is None:
            return None
        return fairness_key_of(self.name, self.fairness_key, value)

    def run(self, value: P, ctx: JobContext) -> Any:
        """Call the handler; returns its result (an awaitable for async handlers)."""
        return self._call(value, ctx)

    def s(self, payload: P) -> Signature[P, R]:
        """This job with ``payload``, validated now (:class:`InvalidJobPayloadError`): a
        workflow's first step or a group's member (:mod:`glasswork.jobs.workflows`)."""
        return Signature(self, self.validate(payload))

    def result_from(self, value: Any) -> R:
        """A stored result (the JSON value the handler's return was kept as) as the type the
        handler is annotated to return: a model rebuilt from its dict, say. The value as
        stored when the annotation says nothing more (none, Any, a name that cannot be
        resolved) or does not fit it."""
        adapter = self._results
        if adapter is None:
            adapter = _result_adapter(self.handler)
            object.__setattr__(self, "_results", adapter)
        if adapter is _NO_ADAPTER or value is None:
            return value  # type: ignore[no-any-return]
        try:
            return adapter.validate_python(value)  # type: ignore[no-any-return]
        except ValidationError:
            return value  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        kind = "periodic job" if self.periodic else "job"
        return f"<{kind} {self.name!r} queue={self.queue!r}>"


@overload
def define_job(
    *,
    name: str,
    handler: AsyncHandler[P, R],
    schema: type[P] | TypeAdapter[P],
    queue: str | None = None,
    unique: UniqueOption[P] = None,
    retry: RetryOption = None,
    group_id: GroupOption[P] = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    priority: int = 0,
    rate_limit: str | None = None,
    concurrency_limit: int | None = None,
    concurrency_key: Callable[[P], object] | None = None,
    fairness_key: Callable[[P], object] | None = None,
) -> JobDefinition[P, R]: ...
@overload
def define_job(
    *,
    name: str,
    handler: Handler[P, R],
    schema: type[P] | TypeAdapter[P],
    queue: str | None = None,
    unique: UniqueOption[P] = None,
    retry: RetryOption = None,
    group_id: GroupOption[P] = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    priority: int = 0,
    rate_limit: str | None = None,
    concurrency_limit: int | None = None,
    concurrency_key: Callable[[P], object] | None = None,
    fairness_key: Callable[[P], object] | None = None,
) -> JobDefinition[P, R]: ...
@overload
def define_job(
    *,
    name: str,
    handler: AsyncHandler[Any, R],
    schema: None = None,
    queue: str | None = None,
    unique: UniqueOption[Any] = None,
    retry: RetryOption = None,
    group_id: GroupOption[Any] = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    priority: int = 0,
    rate_limit: str | None = None,
    concurrency_limit: int | None = None,
    concurrency_key: Callable[[Any], object] | None = None,
    fairness_key: Callable[[Any], object] | None = None,
) -> JobDefinition[Any, R]: ...
@overload
def define_job(
    *,
    name: str,
    handler: Handler[Any, R],
    schema: None = None,
    queue: str | None = None,
    unique: UniqueOption[Any] = None,
    retry: RetryOption = None,
    group_id: GroupOption[Any] = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    priority: int = 0,
    rate_limit: str | None = None,
    concurrency_limit: int | None = None,
    concurrency_key: Callable[[Any], object] | None = None,
    fairness_key: Callable[[Any], object] | None = None,
) -> JobDefinition[Any, R]: ...
@overload
def define_job(
    *,
    name: str,
    handler: AsyncHandler[Any, R],
    schema: UnionType,
    queue: str | None = None,
    unique: UniqueOption[Any] = None,
    retry: RetryOption = None,
    group_id: GroupOption[Any] = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    priority: int = 0,
    rate_limit: str | None = None,
    concurrency_limit: int | None = None,
    concurrency_key: Callable[[Any], object] | None = None,
    fairness_key: Callable[[Any], object] | None = None,
) -> JobDefinition[Any, R]: ...
@overload
def define_job(
    *,
    name: str,
    handler: Handler[Any, R],
    schema: UnionType,
    queue: str | None = None,
    unique: UniqueOption[Any] = None,
    retry: RetryOption = None,
    group_id: GroupOption[Any] = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    priority: int = 0,
    rate_limit: str | None = None,
    concurrency_limit: int | None = None,
    concurrency_key: Callable[[Any], object] | None = None,
    fairness_key: Callable[[Any], object] | None = None,
) -> JobDefinition[Any, R]: ...
def define_job(
    *,
    name: str,
    handler: Callable[..., Any],
    schema: Any = None,
    queue: str | None = None,
    unique: UniqueOption[Any] = None,
    retry: RetryOption = None,
    group_id: GroupOption[Any] = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    priority: int = 0,
    rate_limit: str | None = None,
    concurrency_limit: int | None = None,
    concurrency_key: Callable[[Any], object] | None = None,
    fairness_key: Callable[[Any], object] | None = None,
) -> JobDefinition[Any, Any]:
    """Turn a plain function into a job.

    ``handler(payload, ctx)`` (or ``handler(payload)``, or ``handler()``) may be sync or
    ``async def``; it receives the payload validated by ``schema``: a pydantic model, a
    ``TypedDict``, a dataclass, or any type pydantic's ``TypeAdapter`` accepts (pass a
    ``TypeAdapter`` for forms such as ``Annotated[...]``, so type checkers know the type).
    The job is a ``JobDefinition[P, R]`` for a schema of type ``P`` and a handler returning
    ``R``, and type checkers check the handler, and every enqueue, against ``P``, and what
    ``handle.wait()`` returns against ``R``.

    ``unique`` is ``{"key": fn}`` or ``fn``: payload → key; a second pending job with the same
    key is refused. ``retry`` is ``{"max_attempts": N, "backoff": s, "max_backoff": s,
    "jitter": bool, "retry_on": (errors...), "dead_letter_on": (errors...)}``, a
    :class:`RetryPolicy`, or ``False`` to discard the job after its first failure (see
    :class:`RetryPolicy` for which errors are retried). ``group_id`` sets the FIFO message
    group (a string or payload → string).
    ``timeout`` (seconds, ``"30s"`` or a timedelta) bounds one run: past it the run fails
    with :class:`JobTimeoutError` (transient; async handlers are cancelled, a sync handler's
    thread is abandoned by the long-running worker). ``idempotent=True`` runs the handler at
    most once per job id however often the message is delivered; ``Idempotency(store=,
    key=, expires=)`` picks the store, keys on the payload and sets how long a key is kept.

    ``result_ttl`` (seconds, ``"1h"`` or a timedelta; a day by default) is how long the
    driver keeps the job's status and result after it ends (``JobService.status``,
    ``wait``); ``0`` keeps none. ``priority`` (an integer, 0 by default): higher runs first
    within the queue, on drivers that claim by priority (SQLite, PostgreSQL, the mock); a
    non-zero one on another driver is refused at enqueue
    (:class:`~glasswork.jobs.errors.PriorityUnsupportedError`).

    ``rate_limit`` (``"5/s"``, ``"100/m"``, ``"1000/h"``): the job starts at most that many
    times in any such window, across every worker. ``concurrency_limit`` (a positive
    integer): at most that many run at once per ``concurrency_key`` (payload -> key; without
    one, per job), across every worker. Both need a driver that can hold them (SQLite,
    PostgreSQL, the mock in a long-running worker); a worker on another refuses to start.
    A job held back is put back with a delay that is not an attempt.

    ``fairness_key`` (payload -> a tenant id, a string or an integer; None for a payload of
    no tenant): the queue's jobs are claimed round-robin across keys, so a tenant with a
    large backlog does not hold back one with a few jobs (SQLite, PostgreSQL, the mock);
    on SQS the key is the message's ``MessageGroupId`` on standard queues (SQS fair
    queues). A key function that raises, or returns anything else, fails the enqueue
    (:class:`InvalidJobPayloadError`); a driver that cannot keep fairness refuses it.

    >>> ping = define_job(name="ping", handler=lambda: None)
    """
    return JobDefinition(
        name=_check_name(name),
        handler=_check_handler(name, handler),
        queue=queue,
        schema=schema,
        retry=RetryPolicy.from_option(retry),
        unique_key=_unique_key_fn(name, unique),
        group_id=group_id,
        timeout=_check_timeout(name, timeout),
        idempotency=Idempotency.from_option(idempotent),
        result_ttl=_check_result_ttl(name, result_ttl),
        priority=check_priority(priority, f"job {name!r}: priority"),
        rate_limit=parse_rate_limit(name, rate_limit),
        concurrency_limit=check_concurrency(name, concurrency_limit, concurrency_key),
        concurrency_key=concurrency_key,
        fairness_key=check_fairness_key(name, fairness_key),
    )


@overload
def define_periodic_job(
    *,
    name: str,
    handler: AsyncHandler[P, R],
    schema: type[P] | TypeAdapter[P],
    schedule: str | None = None,
    retry: RetryOption = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    catchup: Catchup = "none",
    catchup_limit: int | None = None,
    overlap: bool = True,
) -> JobDefinition[P, R]: ...
@overload
def define_periodic_job(
    *,
    name: str,
    handler: Handler[P, R],
    schema: type[P] | TypeAdapter[P],
    schedule: str | None = None,
    retry: RetryOption = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    catchup: Catchup = "none",
    catchup_limit: int | None = None,
    overlap: bool = True,
) -> JobDefinition[P, R]: ...
@overload
def define_periodic_job(
    *,
    name: str,
    handler: AsyncHandler[Any, R],
    schema: None = None,
    schedule: str | None = None,
    retry: RetryOption = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    catchup: Catchup = "none",
    catchup_limit: int | None = None,
    overlap: bool = True,
) -> JobDefinition[Any, R]: ...
@overload
def define_periodic_job(
    *,
    name: str,
    handler: Handler[Any, R],
    schema: None = None,
    schedule: str | None = None,
    retry: RetryOption = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    catchup: Catchup = "none",
    catchup_limit: int | None = None,
    overlap: bool = True,
) -> JobDefinition[Any, R]: ...
def define_periodic_job(
    *,
    name: str,
    handler: Callable[..., Any],
    schema: Any = None,
    schedule: str | None = None,
    retry: RetryOption = None,
    timeout: Delay | None = None,
    idempotent: bool | Idempotency = False,
    result_ttl: Delay = DEFAULT_RESULT_TTL,
    catchup: Catchup = "none",
    catchup_limit: int | None = None,
    overlap: bool = True,
) -> JobDefinition[Any, Any]:
    """A job run on a schedule: by an EventBridge rule whose input is ``{"jobName": name}``,
    or by the long-running worker (``--periodic``) from ``schedule``, a cron expression
    (``"0 3 * * *"``, ``"cron(0 3 * * ? *)"``) or ``"rate(5 minutes)"``. A schedule that
    cannot be read (or that EventBridge would refuse) raises :class:`ConfigurationError`
    here, when the job is defined. With ``idempotent=True`` an EventBridge event delivered
    twice (same event id) runs once. ``result_ttl`` as for :func:`define_job`.

    For the long-running worker on SQLite or PostgreSQL (which record each fire):
    ``catchup`` says which fires missed while no worker ran are run when one starts again:
    ``"none"`` (the default), the ``"latest"``, or ``"all"``, the most recent
    ``catchup_limit`` of them (default 100); the others are logged and counted as missed.
    ``overlap=False`` skips (logs and counts) a fire while an earlier run of the job is
    pending, running or waiting to retry. EventBridge misses no fire, and on Lambda
    ``overlap`` is not enforced (give the function a reserved concurrency of 1).
    """
    return JobDefinition(
        name=_check_name(name),
        handler=_check_handler(name, handler),
        queue=None,
        schema=schema,
        retry=RetryPolicy.from_option(retry),
        periodic=True,
        schedule=_check_schedule(name, schedule),
        timeout=_check_timeout(name, timeout),
        idempotency=Idempotency.from_option(idempotent),
        result_ttl=_check_result_ttl(name, result_ttl),
        periodic_policy=PeriodicPolicy.of(name, catchup, catchup_limit, overlap),
    )


def check_priority(priority: object, what: str) -> int:
    """``priority`` if it is an integer in :data:`PRIORITY_RANGE`; a
    :class:`ConfigurationError` naming ``what`` otherwise."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigurationError(f"{what} must be an integer, got {priority!r}")
    if priority not in PRIORITY_RANGE:
        raise ConfigurationError(
            f"{what} must be from {PRIORITY_RANGE.start:,} to {PRIORITY_RANGE.stop - 1:,}, "
            f"got {priority:,}"
        )
    return priority


def _check_result_ttl(name: str, result_ttl: Delay) -> float:
    what = f"job {name!r}: result_ttl"
    try:
        seconds = parse_duration(result_ttl)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{what}: {exc}") from None
    if not seconds < float("inf"):
        raise ConfigurationError(
            f"{what} must be finite seconds (0 keeps none), got {result_ttl!r}"
        )
    return seconds


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigurationError(f"a job needs a non-empty string name, got {name!r}")
    return name


def _check_timeout(name: str, timeout: Delay | None) -> float | None:
    return None if timeout is None else positive_seconds(timeout, f"job {name!r}: timeout")


def _check_schedule(name: str, schedule: str | None) -> str | None:
    if schedule is None:
        return None
    from .schedules import validate_schedule

    try:
        validate_schedule(schedule)
    except ConfigurationError as exc:
        raise ConfigurationError(f"periodic job {name!r}: {exc}") from None
    return schedule


def _check_handler(name: str, handler: Handler[Any]) -> Callable[..., Any]:
    if not callable(handler):
        raise ConfigurationError(f"job {name!r}: handler must be callable, got {handler!r}")
    return handler


def _unique_key_fn(name: str, unique: UniqueOption[Any]) -> Callable[[Any], object] | None:
    if unique is None:
        return None
    if isinstance(unique, Mapping):
        key = unique.get("key")
        if not callable(key) or set(unique) - {"key"}:
            raise ConfigurationError(
                f"job {name!r}: unique must be {{'key': fn}} or a function, got {unique!r}"
            )
        return key
    if callable(unique):
        return unique
    raise ConfigurationError(f"job {name!r}: unique must be {{'key': fn}} or a function")


def _is_async(handler: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async __call__ on callable objects
    )


def _adapt_arity(name: str, handler: Callable[..., Any]) -> Callable[[Any, JobContext], Any]:
    """Let handlers take ``(payload, ctx)``, ``(payload)`` or nothing."""
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: assume (payload, ctx)
        return handler
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in params) or len(positional) >= 2:
        return handler
    if len(positional) == 1:
        return lambda value, _ctx: handler(value)
    if any(p.default is p.empty and p.kind is p.KEYWORD_ONLY for p in params):
        raise ConfigurationError(
            f"job {name!r}: handler must accept (payload, ctx), (payload) or nothing"
        )
    return lambda _value, _ctx: handler()


_NO_ADAPTER = object()


def _result_adapter(handler: Callable[..., Any]) -> Any:
    """A TypeAdapter for what ``handler`` is annotated to return, or :data:`_NO_ADAPTER`."""
    target = handler if inspect.isroutine(handler) else getattr(handler, "__call__", handler)  # noqa: B004
    try:
        annotation = inspect.signature(target, eval_str=True).return_annotation
    except Exception:  # no signature, or an annotation naming what cannot be imported here
        return _NO_ADAPTER
    if annotation in (inspect.Signature.empty, None, type(None), Any, object):
        return _NO_ADAPTER
    try:
        return TypeAdapter(annotation)
    except Exception:  # an annotation pydantic cannot validate (a protocol, say)
        return _NO_ADAPTER


@dataclass(frozen=True, slots=True)
class Signature(Generic[P, R]):
    """``job`` with ``payload``, validated against its schema when made
    (:class:`InvalidJobPayloadError` at once): a workflow's first step, or a group's member
    (:mod:`glasswork.jobs.workflows`). Made by :meth:`JobDefinition.s`::

        chain(resize.s(Image(url=u)), publish)
        group(*(resize.s(Image(url=u)) for u in urls)).then(build_album)
    """

    job: JobDefinition[P, R]
    payload: P
