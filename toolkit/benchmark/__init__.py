"""Stage 5: measure host latency of every artifact next to the float PyTorch reference."""

from toolkit.benchmark.host import measure_latency

__all__ = ["measure_latency"]
