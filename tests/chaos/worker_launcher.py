"""``crm-kpi worker`` for the chaos suite: the real worker, unchanged, except that
aiokafka's group-membership lines (``Joined group 'x' (generation n) with member_id m``)
are logged. The suite reads them to count rebalances and to know the member ids of a
worker it has just SIGKILLed (see ``support.Fleet.kill``).

Run as ``python -m tests.chaos.worker_launcher`` with the usual ``CRM_KPI_*`` variables.
"""

from __future__ import annotations

import logging


def main() -> None:
    # an explicit level on the child survives configure_logging(), which caps "aiokafka"
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(logging.INFO)
    from streams.cli import app

    app(["worker"], prog_name="crm-kpi")


if __name__ == "__main__":
    main()
