"""Calibration and precision: FP16 / INT8 (Q/DQ) graphs from calibration images."""
