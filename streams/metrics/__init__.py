"""Prometheus exposition: a custom collector that builds every family from a snapshot
at scrape time, and the small HTTP server that serves it."""
