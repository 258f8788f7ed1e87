"""Execution: predictions -> orders through the C++ executor (``hft_exec``), its journal and the service.

* :mod:`hft.execution.config`: the executor's strategy, risk and paper-exchange settings (``HFT_EXEC_*``).
* :mod:`hft.execution.journal`: the append-only, fsynced event journal a restarted executor recovers from.
* :mod:`hft.execution.service`: ``hft execute``: Redis predictions stream -> executor -> orders, fills and
  positions to Redis and Kafka, with the kill switch.
"""
