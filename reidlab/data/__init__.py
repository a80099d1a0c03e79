"""Records, official-format loaders, the synthetic benchmark, transforms and samplers."""

from reidlab.data.records import MODALITIES, DataFormatError, ImageRef, Record, Split

__all__ = ["MODALITIES", "DataFormatError", "ImageRef", "Record", "Split"]
