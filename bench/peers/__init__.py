"""Harnesses for the libraries Glasswork is compared with; each file also runs alone."""
