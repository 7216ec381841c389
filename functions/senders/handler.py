"""Sender Lambda: the table stream's new message items (MSG#, status queued) delivered, with partial batch failures."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from shared import constants as C
from shared.lambda_logger import FirstUseLogger
from shared.messaging.channels import SesAlertChannel, SesEmailChannel, SmsChannel
from shared.messaging.delivery import Policy, Sender, message_from_stream
from shared.messaging.templates import TemplateSet
from shared.messaging.unsubscribe import Links
from shared.store.messages import MessageStore

if TYPE_CHECKING:
    # Powertools loads with the first invocation: its Logger (with its Metrics and Tracer, ~25 ms) at the first
    # call, its parameters with the first sender, the batch utility (asyncio, the stream's data classes, ~43 ms)
    # with the first batch, as the router's; these are its types.
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = FirstUseLogger(C.SERVICE_NAME)
CODE_ROOT = Path(__file__).resolve().parents[2]  # the asset's root in AWS (/var/task), the repository here
REQUIRED = (
    C.ENV_TABLE_NAME,
    C.ENV_EMAIL_FROM,
    C.ENV_SES_CONFIGURATION_SET,
    C.ENV_UNSUBSCRIBE_URL,
    C.ENV_UNSUBSCRIBE_KEY_PARAMETER,
)


@dataclass(frozen=True)
class Settings:
    """Configuration, read once per cold start; a missing key fails loudly. The stack's own environment variables
    (strings, checked for presence): a frozen dataclass, so the sender's import loads no pydantic (issue 11 item 9)."""

    table_name: str
    email_from: str
    configuration_set: str
    unsubscribe_url: str
    unsubscribe_key_parameter: str
    sms_origination: str = ""  # "" = no SMS configured: an SMS message fails with that reason
    sms_configuration_set: str = ""
    templates_dir: str = C.TEMPLATES_FOLDER
    unsubscribe_mailto: str = ""

    @classmethod
    def from_env(cls) -> Settings:
        missing = [k for k in REQUIRED if not os.environ.get(k)]
        if missing:
            raise RuntimeError(f"sender misconfigured: environment variable(s) {', '.join(missing)} not set")
        return cls(
            table_name=os.environ[C.ENV_TABLE_NAME],
            email_from=os.environ[C.ENV_EMAIL_FROM],
            configuration_set=os.environ[C.ENV_SES_CONFIGURATION_SET],
            unsubscribe_url=os.environ[C.ENV_UNSUBSCRIBE_URL],
            unsubscribe_key_parameter=os.environ[C.ENV_UNSUBSCRIBE_KEY_PARAMETER],
            sms_origination=os.environ.get(C.ENV_SMS_ORIGINATION, ""),
            sms_configuration_set=os.environ.get(C.ENV_SMS_CONFIGURATION_SET, ""),
            templates_dir=os.environ.get(C.ENV_TEMPLATES_DIR, C.TEMPLATES_FOLDER),
            unsubscribe_mailto=os.environ.get(C.ENV_UNSUBSCRIBE_MAILTO, ""),
        )


_sender: Sender | None = None
# The providers' clients never retry inside botocore: a retried SendEmail / SendTextMessage after a read timeout
# could send twice (neither takes an idempotency token). A throttle or an outage surfaces as a retryable
# ChannelError instead: the claim is given back and the stream retries the record.
PROVIDER_CLIENT: dict[str, Any] = {"retries": {"total_max_attempts": 1}, "connect_timeout": 5, "read_timeout": 20}


def sender() -> Sender:
    global _sender
    if _sender is None:
        s = Settings.from_env()
        from aws_lambda_powertools.utilities import parameters
        from botocore.config import Config

        providers = Config(**PROVIDER_CLIENT)
        ses = boto3.client("sesv2", config=providers)
        channels: dict[str, Any] = {
            "email": SesEmailChannel(ses, s.email_from, s.configuration_set),
            "alert": SesAlertChannel(ses, s.email_from, s.configuration_set),
        }
        if s.sms_origination:
            channels["sms"] = SmsChannel(
                boto3.client("pinpoint-sms-voice-v2", config=providers), s.sms_origination, s.sms_configuration_set
            )
        key = parameters.get_parameter(s.unsubscribe_key_parameter, decrypt=True, max_age=300)
        _sender = Sender(
            MessageStore(s.table_name, boto3.client("dynamodb")),
            channels,
            TemplateSet.load(CODE_ROOT / s.templates_dir),
            Links(str(key).encode(), s.unsubscribe_url, s.unsubscribe_mailto),
            Policy(configuration_set=s.configuration_set),
        )
    return _sender


def reset() -> None:
    """Forget the cold-start state (tests swap the environment)."""
    global _sender
    _sender = None


def record_handler(record: DynamoDBRecord) -> None:
    msg = message_from_stream(record.raw_event)
    if msg is None:
        return  # not a message to deliver (the event source filter lets only these through in AWS)
    done = sender().deliver(msg)
    # Ids and outcomes only: never an address or a body.
    logger.info("message", extra={"message_id": done.message_id, "status": done.status, "reason": done.reason})


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    # A processor per invocation: it holds the batch's state, and the tests run two invocations at once.
    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
