"""Dataset preparers: ``SOURCES[name].prepare(src, out, **options) -> PrepareReport``."""

from moeaudio.data.sources.base import SOURCES, PrepareReport, get_source, prepare_source

__all__ = ["SOURCES", "PrepareReport", "get_source", "prepare_source"]
