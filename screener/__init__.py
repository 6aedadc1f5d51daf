"""screener: high-throughput screening of ionic migration barriers (E_m) in battery materials.

Data path: sources (hosts) -> hops (sites and hops) -> bands -> model -> inference -> ranking
-> follow-ups, all driven by FireWorks workflows over one MongoDB store (``screener.store``).
"""

__version__ = "0.1.0"
