"""Experiment reports: one computation (service.build_report) with several faces (JSON, CSV,
markdown, HTML)."""
