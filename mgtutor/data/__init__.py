"""mgtutor.data: SMG-format sequences, synthetic micro-gestures, video decoding, sliding windows.

Modules: ``smg`` (files on disk, checking), ``synthetic`` (the generator), ``video`` (PyAV decoding),
``cache`` (the frame cache of ``mgtutor prepare``), ``windows`` (the frame <-> window mapping and the
window rules), ``dataset`` (the torch Dataset, ``collate`` and ``model_inputs``), ``augment`` (the training
augmentation: parameters drawn per window, applied to batches on the device), ``errors`` (``DataError``).
"""

from mgtutor.data.errors import DataError
from mgtutor.data.smg import Gesture, SequenceInfo, check_root, load_root

__all__ = ["DataError", "Gesture", "SequenceInfo", "check_root", "load_root"]
