"""nbval's settings for these notebooks, found by pytest itself: `pytest --nbval notebooks` needs no other flag.

- The kernel is this Python (nbval's --nbval-current-env): the notebooks run against the mgtutor installed
  where pytest runs, whatever kernels Jupyter knows of.
- Outputs are compared after sanitize.cfg (nbval's --nbval-sanitize-with) blanks the little that may differ
  between machines: memory addresses and progress bars. Everything else a cell prints is compared exactly,
  so cells print no timings or temporary paths; the few that must show something machine-dependent carry
  the `nbval-ignore-output` tag.
"""

from pathlib import Path


def pytest_configure(config):
    option = config.option
    if getattr(option, "nbval_sanitize_with", None) is None and hasattr(option, "nbval_sanitize_with"):
        option.nbval_sanitize_with = str(Path(__file__).with_name("sanitize.cfg"))
    if hasattr(option, "nbval_current_env") and not getattr(option, "nbval_kernel_name", None):
        option.nbval_current_env = True
