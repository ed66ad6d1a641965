"""Data files installed with mgtutor: the Kinetics-400 I3D sample clip (``kinetics_i3d_sample/``)."""
