"""The boto3 clients of one SQS driver: SQS and DynamoDB, the caller's or made on first use
in the driver's region and endpoint, and a check client that gives up sooner."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import NoRegionError

from .problems import Settings, no_region

BOTO_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})
#: For check(): a mistake in the setup should show in seconds, not after every retry.
CHECK_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=5
)


class Clients:
    """Where one driver's AWS calls go. ``sqs``/``dynamodb``: ready boto3 clients (the
    caller's); otherwise each is made on first use from ``region`` and ``endpoint_url``."""

    def __init__(
        self,
        *,
        region: str | None,
        endpoint_url: str | None,
        settings: Settings,
        sqs: Any = None,
        dynamodb: Any = None,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.settings = settings
        #: The SQS client the caller gave (None: made here), for the async path's settings.
        self.given_sqs = sqs
        self._sqs = sqs
        self._checker = sqs  # check()'s: the caller's, or one that gives up sooner
        self._dynamodb = dynamodb

    @property
    def sqs(self) -> Any:
        """The boto3 SQS client (made on first use)."""
        if self._sqs is None:
            self._sqs = self.new("sqs")
        return self._sqs

    @property
    def dynamodb(self) -> Any:
        """The boto3 DynamoDB client (made on first use), for the scheduler and unique-key
        tables."""
        if self._dynamodb is None:
            self._dynamodb = self.new("dynamodb")
        return self._dynamodb

    @property
    def checker(self) -> Any:
        """The SQS client of :meth:`~.queues.QueueDirectory.check`: few retries, short
        timeouts (unless the caller gave one)."""
        if self._checker is None:
            self._checker = self.new("sqs", CHECK_CONFIG)
        return self._checker

    def new(self, service: str, config: Config = BOTO_CONFIG) -> Any:
        """A new boto3 client of ``service`` in this region and endpoint; no region is a
        :class:`~glasswork.jobs.ConfigurationError` naming the setting."""
        try:
            return boto3.client(
                service, region_name=self.region, endpoint_url=self.endpoint_url, config=config
            )
        except NoRegionError:
            raise no_region(self.settings) from None
