"""Grafana dashboards as code for crm-kpi-streams (``python -m grafana.generate``)."""
