"""crm-kpi-streams: streaming, event-time KPI processor for CRM data."""

__version__ = "0.1.0"
