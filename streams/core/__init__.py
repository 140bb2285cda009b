"""Pure KPI core: no Kafka, asyncio or Prometheus imports (enforced by a test).

The streaming runtime and ``crm-kpi replay`` both drive these functions, which is why
their results agree.
"""
