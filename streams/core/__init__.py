"""Pure KPI core: no Kafka, asyncio or Prometheus imports (enforced by a test).

The streaming runtime and ``crm-kpi replay`` both drive these functions, which is why
their results agree. Most modules also exist compiled with mypyc; :mod:`streams.core.native`
decides, on this import, which build the process uses.
"""

from streams.core import native as _native

_native.activate(__path__)
