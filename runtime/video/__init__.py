"""The live-video wing: sources (files, folders, cameras, streams), the pipeline that runs them through
one ``Detector`` (one source, or several batched into one call), tracking with colour checks, drawing,
MP4 writing and the output sinks.

    from retina_edge.runtime.video import Pipeline, PipelineConfig

It builds on :mod:`retina_edge.runtime.core`; nothing below it imports it.
"""

from retina_edge.runtime.video.pipeline import Pipeline
from retina_edge.runtime.video.run import FrameResult, PipelineConfig
from retina_edge.runtime.video.stats import PipelineStats
from retina_edge.runtime.video.tracking import TrackerOptions

__all__ = ["FrameResult", "Pipeline", "PipelineConfig", "PipelineStats", "TrackerOptions"]
