"""An app for tests that run ``glasswork worker`` as a real process (``fixtures_app.app``)."""
