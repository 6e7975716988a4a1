"""AWS Lambda Powertools' batch utility on the same SQS event Glasswork's worker gets.

``BatchProcessor(EventType.SQS)`` + ``process_partial_response``, built once (as in a Lambda
module), with a record handler that validates the same pydantic payload from the same body;
and ``AsyncBatchProcessor`` + ``async_process_partial_response`` with an async record handler
that validates it and then awaits the same simulated I/O as Glasswork's async job.

Run alone: ``python bench/peers/powertools_batch.py`` (``bench/lambda_dispatch.py`` runs it
side by side with Glasswork, interleaved, which is the comparison to quote).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workload import Envelope, simulated_io

LambdaHandler = Callable[[dict[str, Any], Any], dict[str, Any]]


def make_handler() -> LambdaHandler:
    """The handler a Powertools user writes: the record handler parses the body into the
    envelope model (one pydantic call that also validates the payload)."""
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    processor = BatchProcessor(event_type=EventType.SQS)

    def record_handler(record: SQSRecord) -> None:
        Envelope.model_validate_json(record.body)

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_partial_response(  # type: ignore[return-value]
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return lambda_handler


def make_model_handler() -> LambdaHandler:
    """The Powertools variant with its parser integration: ``BatchProcessor(model=...)``
    validates each whole record (a ``SqsRecordModel`` whose body is ``Json[Envelope]``)."""
    from aws_lambda_powertools.utilities.batch import (
        BatchProcessor,
        EventType,
        process_partial_response,
    )
    from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
    from pydantic import Json

    class EnvelopeRecord(SqsRecordModel):
        body: Json[Envelope]  # type: ignore[assignment]

    processor = BatchProcessor(event_type=EventType.SQS, model=EnvelopeRecord)

    def record_handler(record: EnvelopeRecord) -> None:
        return None

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return process_partial_response(  # type: ignore[return-value]
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return lambda_handler


def make_async_handler() -> LambdaHandler:
    """The async variant a Powertools user writes for I/O-bound records:
    ``AsyncBatchProcessor`` runs the record handlers of a batch concurrently."""
    from aws_lambda_powertools.utilities.batch import (
        AsyncBatchProcessor,
        EventType,
        async_process_partial_response,
    )
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    processor = AsyncBatchProcessor(event_type=EventType.SQS)

    async def record_handler(record: SQSRecord) -> None:
        envelope = Envelope.model_validate_json(record.body)
        await simulated_io(envelope.payload)

    def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return async_process_partial_response(  # type: ignore[return-value]
            event=event, record_handler=record_handler, processor=processor, context=context
        )

    return lambda_handler


if __name__ == "__main__":
    import logging

    from lambda_dispatch import main  # type: ignore[import-not-found]

    logging.basicConfig(level=logging.WARNING)
    sys.exit(main(sys.argv[1:], contenders=["powertools", "powertools-model", "powertools-async"]))
