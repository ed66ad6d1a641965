"""Index a challenge-style SMG download into the layout mgtutor reads, with symbolic links (no copies).

The release keeps the videos (``SampleXXXX_color.mp4``) in one tree and the ``SampleXXXX_finelabels.csv``,
``_data.csv`` and ``_skeleton.csv`` files in another, each nested by split folders. This script finds
every such file under the given folders and links it as ``OUT/SampleXXXX/SampleXXXX_<kind>``:

    python data_scripts/index_smg_release.py ~/smg/videos ~/smg/labels --out data/smg
    mgtutor check-data data/smg

Rerunning it after more of the download arrives keeps the links already made. The work is done by
``mgtutor.data.smg.index_release``.
"""

from __future__ import annotations

import argparse
import sys

from mgtutor.data.errors import DataError
from mgtutor.data.smg import index_release


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="folders of the download (searched recursively)")
    parser.add_argument("--out", required=True, help="the SMG-format root to create (SampleXXXX/ folders of links)")
    args = parser.parse_args(argv)
    try:
        report = index_release(args.sources, args.out)
    except DataError as err:
        print(f"index_smg_release: error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.missing else 0


if __name__ == "__main__":
    sys.exit(main())
