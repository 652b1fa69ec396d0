"""The Detector core: a deployed model file and its contract, the backend choice, and what the host
does around inference (decode anchors, NMS, map boxes to the source image, the result types).

It builds on :mod:`retina_edge.runtime.backends` (the engines) and :mod:`retina_edge.runtime.tensorrt`
(engine files); :mod:`retina_edge.runtime.video` and :mod:`retina_edge.runtime.remote` build on it.
"""
