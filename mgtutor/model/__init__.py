"""mgtutor.model"""

from mgtutor.model.detector import Detector, DetectorOutput, parameter_table

__all__ = ["Detector", "DetectorOutput", "parameter_table"]
