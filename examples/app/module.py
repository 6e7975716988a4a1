"""The app module: providers and jobs, as the worker and the CLI load it
(``app.module:AppModule``)."""

from __future__ import annotations

from glasswork import define_module

from .jobs import cleanup_stale_sessions, send_welcome_email
from .services import EmailService, UserService

AppModule = define_module(
    name="app",
    providers=[UserService, EmailService],
    jobs=[send_welcome_email, cleanup_stale_sessions],
)
