"""reidlab: multi-modal and visible-infrared re-identification, reproduced side by side."""

__version__ = "0.1.0"
