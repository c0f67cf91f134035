"""The data layer: every source yields (waveform, label) through one interface.

    src = open_source("gsc12-dev", labels="12")
    train = src.split("train")          # ClipSet: int16 memmap waves, int64 y, files, speakers
    wave, label = train[0]              # float32 [16000] in [-1, 1), int
    src.noise                           # float32 background noise at 16 kHz (training part)
    src.summary()                       # clip counts per split and label, bad files

CLI: ``python -m kws.data summary|build|bench-load|download``. The synthetic generator lives
in ``kws.data.synth`` and is imported only when a ``synth`` source is opened.
"""
from kws.data.cache import ClipSet, cache_root
from kws.data.index import SPLITS, BadFile, ClipEntry, DataError
from kws.data.source import SHORTCUTS, DataSource, open_source, parse_spec
from kws.data.splits import which_set
from kws.data.views import FAST_TRAIN_CLIPS, LABEL_SETS

__all__ = [
    "LABEL_SETS", "SPLITS", "FAST_TRAIN_CLIPS", "SHORTCUTS",
    "open_source", "parse_spec", "DataSource", "ClipSet", "ClipEntry", "BadFile", "DataError",
    "cache_root", "which_set",
]
