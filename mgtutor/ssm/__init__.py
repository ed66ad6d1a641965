"""mgtutor.ssm: state-space models from the continuous ODE to Mamba's selective scan and block.

- `discretise`: zero-order hold, bilinear, Euler and Mamba's simplified rule; the convolution kernel.
- `scan`: `selective_scan` (chunked, the default) and `selective_scan_loop` (one step at a time).
- `mamba`: the `Mamba` block, state-dict compatible with ``mamba_ssm.Mamba``.
"""

from mgtutor.ssm.mamba import Mamba
from mgtutor.ssm.scan import selective_scan, selective_scan_loop

__all__ = ["Mamba", "selective_scan", "selective_scan_loop"]
