"""What the benchmark scripts share: the line naming the machine, and writing one section of a README.

Timings depend on the machine, its load and the library versions, so every table is printed with
:func:`machine_line`; ``--readme`` options replace one ``## ...`` section of ``benchmarks/README.md`` and
leave the rest of the file alone.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import torch

from mgtutor.ssm.benchmark import machine


def machine_line(device: torch.device | str = "cpu") -> str:
    """Date, the device (GPU name and memory, CUDA version) and the CPU side (model, cores, threads,
    torch version, load average)."""
    device = torch.device(device)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    line = f"{date}; {machine()}"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        line = f"{date}; {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}; {machine()}"
    return line


def write_section(readme: str | Path, heading: str, text: str) -> None:
    """Replace the section ``heading`` (e.g. ``"## Training step"``) of ``readme`` up to the next
    ``## `` heading, or append it; the file's other sections stay as they are."""
    readme = Path(readme)
    old = readme.read_text() if readme.exists() else "# Benchmarks\n"
    section = f"{heading}\n\n{text.strip()}\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: section + "\n", old, count=1).rstrip() + "\n"
    else:
        new = old.rstrip() + "\n\n" + section
    readme.write_text(new)
