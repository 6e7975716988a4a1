"""The Glasswork dashboard: queues, outcomes, dead letters and jobs in a browser.

Install the extra and run the command::

    pip install 'glasswork[dashboard]'
    glasswork dashboard --driver sqlite:///jobs.db --app myapp.module:AppModule

or serve :func:`create_app` with any ASGI server. See docs/dashboard.md.
"""

from __future__ import annotations

from .app import create_app

__all__ = ["create_app"]
