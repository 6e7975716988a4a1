"""What goes wrong between the SQS driver and AWS, said as what to fix.

* :class:`Settings`: how the user wrote the driver's settings, so a message names the
  ``sqs://`` URL's parameter (``queue.default=``) when the driver came from a URL, and the
  Python argument (``queues['default']``, ``SQSQueueDriver(region=...)``) otherwise;
* :func:`explain`: botocore's errors (no credentials, no region, an endpoint that does not
  answer, a queue that does not exist, refused credentials) as a
  :class:`~glasswork.jobs.ConfigurationError` on one line; None for any other error.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from ...aws.errors import error_code
from ...errors import ConfigurationError

#: SQS's codes for a queue URL that names no queue.
NO_SUCH_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
#: Codes for credentials AWS does not accept.
REFUSED_CREDENTIALS = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "AuthFailure",
    }
)
#: Codes for a call the credentials may not make.
DENIED = frozenset({"AccessDenied", "AccessDeniedException"})

_EXAMPLE_URL = "sqs://us-east-1?queue.default=https://sqs.us-east-1.amazonaws.com/123456789012/jobs"


@dataclass(frozen=True)
class Settings:
    """How the driver's settings were written: ``url`` is the ``sqs://`` URL it was made
    from (None: Python arguments)."""

    url: str | None = None

    def name(self, setting: str, queue: str | None = None) -> str:
        """Where to change ``setting`` (for ``queues``/``dead_letter_queues``, the entry of
        ``queue``): ``queue.emails= in the sqs:// URL``, ``queues['emails']``,
        ``SQSQueueDriver(region=...)``."""
        if self.url is not None:
            key = {"queues": "queue.", "dead_letter_queues": "dlq."}.get(setting)
            written = f"{key}{queue}=" if key else f"{setting}="
            return f"{written} in the sqs:// URL"
        if queue is not None:
            return f"{setting}[{queue!r}]"
        return f"SQSQueueDriver({setting}=...)"

    def add(self, setting: str, value: str, queue: str | None = None) -> str:
        """How to add a setting: ``add scheduler_table=<table> to the sqs:// URL``."""
        if self.url is not None:
            key = {"queues": "queue.", "dead_letter_queues": "dlq."}.get(setting)
            written = f"{key}{queue}" if key else setting
            return f"add {written}={value} to the sqs:// URL"
        if queue is not None:
            return f"add {queue!r}: {value!r} to SQSQueueDriver({setting}=...)"
        return f"set SQSQueueDriver({setting}={value!r})"


def explain(
    error: BaseException,
    settings: Settings,
    *,
    endpoint_url: str | None = None,
    queue: str | None = None,
    url: str | None = None,
    setting: str = "queues",
) -> ConfigurationError | None:
    """``error`` (from a call about ``queue``, at ``url``, configured by ``setting``) as
    what to fix; None when it is not a mistake in the setup."""
    one_line = " ".join(str(error).split())
    if isinstance(error, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return ConfigurationError(
            f"no AWS credentials ({one_line}): set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run where a role provides them"
        )
    if isinstance(error, NoRegionError):
        return no_region(settings)
    if isinstance(error, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        where = (
            f"check {settings.name('endpoint_url')}"
            if endpoint_url
            else f"check {settings.name('region')} and the network"
        )
        return ConfigurationError(f"cannot reach AWS ({one_line}): {where}")
    if not isinstance(error, ClientError):
        return None
    code = error_code(error)
    if code in NO_SUCH_QUEUE and queue is not None:
        what = f"queue {queue!r}" if setting == "queues" else f"the dead-letter queue of {queue!r}"
        return ConfigurationError(
            f"{what} does not exist: {url} ({settings.name(setting, queue)}); check the "
            "queue's URL, and that the region and account are the queue's"
        )
    if code in REFUSED_CREDENTIALS:
        return ConfigurationError(
            f"AWS refused the credentials ({one_line}): check AWS_PROFILE, or "
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    if code in DENIED:
        target = f" on queue {queue!r} ({url})" if queue is not None else ""
        return ConfigurationError(
            f"AWS denied the call{target} ({one_line}): give these credentials the "
            "permission it names"
        )
    return None


def no_region(settings: Settings) -> ConfigurationError:
    """No region in the settings, the environment or the AWS config file."""
    example = _EXAMPLE_URL if settings.url is not None else "SQSQueueDriver(region='us-east-1')"
    return ConfigurationError(
        f"no AWS region: set {settings.name('region')} (e.g. {example}) or AWS_DEFAULT_REGION"
    )
