"""mgtutor: learn, reproduce and extend micro-gesture online recognition.

The system of "Micro-gesture Online Recognition using Learnable Query Points" (MiGA 2024, 2nd place):
PointTAD's learnable query points with the decoder's self-attention replaced by a Mamba-MHSA block,
on an I3D RGB encoder, trained on SMG-format data and scored with the challenge's F1.

Subpackages, in the order the notebooks build them:

- ``mgtutor.ssm``: state-space discretisation, selective scans, the Mamba block
- ``mgtutor.data``: SMG-format reading, synthetic micro-gestures, video decoding, windows
- ``mgtutor.model``: I3D encoder, query points, interactive module, Mamba-MHSA, decoder, detector
- ``mgtutor.train``: Hungarian matching, set-prediction losses, the training engine, checkpoints
- ``mgtutor.eval``: the MiGA F1, detection-mAP, whole-sequence and online prediction
- ``mgtutor.viz``: plots and widgets

Axis names used across the package (einops patterns and docstrings):

==========  ===========================================================
``b``       batch
``l``       sequence length (scan and Mamba)
``d``       channels (``d_inner`` in Mamba, hidden size in the decoder)
``n``       SSM state size (Mamba's ``d_state``)
``t``       time steps of a window (frames, or features at stride 4)
``q``       queries (48 in the paper)
``p``       query points per query (30 in the paper)
``s``       deformable sub-points per point (4)
``k``       classes (17 SMG labels; +1 for "no object")
``c``       image channels; ``h``, ``w`` height and width
==========  ===========================================================
"""

from mgtutor.config import Config, ConfigError, load_config

__version__ = "0.1.0"
__all__ = ["Config", "ConfigError", "load_config", "__version__"]
