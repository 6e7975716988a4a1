"""The Glasswork example app: a welcome-email job and a periodic cleanup job."""
