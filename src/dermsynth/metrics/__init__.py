"""metrics"""

from dermsynth.metrics.swd import SWDResult, swd, swd_lower_bound

__all__ = ["SWDResult", "swd", "swd_lower_bound"]
