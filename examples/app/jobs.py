"""The jobs: the seeds' welcome email, and a periodic cleanup."""

from __future__ import annotations

from pydantic import BaseModel

from glasswork.jobs import JobContext, PermanentJobError, define_job, define_periodic_job


class WelcomeEmail(BaseModel):
    user_id: str


def _send_welcome_email(payload: WelcomeEmail, ctx: JobContext) -> None:
    user = ctx.services.user_service.find_by_id(payload.user_id)
    if user is None:
        # Retrying cannot make the user exist: straight to the dead letter.
        raise PermanentJobError(f"User not found: {payload.user_id}")
    ctx.services.email_service.send("welcome", to=user.email)
    ctx.logger.info("welcome email sent to user %s", user.id)


send_welcome_email = define_job(
    name="send-welcome-email",
    queue="emails",
    schema=WelcomeEmail,
    unique={"key": lambda p: p.user_id},  # one pending welcome email per user
    retry={"max_attempts": 3, "backoff": 1.0},
    handler=_send_welcome_email,
)


def _cleanup(_payload: object, ctx: JobContext) -> None:
    removed = ctx.services.user_service.remove_stale_sessions()
    ctx.logger.info("daily cleanup removed %d stale session(s)", removed)


cleanup_stale_sessions = define_periodic_job(
    name="cleanup-stale-sessions",
    schedule="cron(0 3 * * ? *)",  # 03:00 UTC daily; `glasswork worker --periodic` fires it
    handler=_cleanup,
)
