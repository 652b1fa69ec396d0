"""Detectors that run elsewhere: :class:`~retina_edge.runtime.remote.triton_client.TritonDetector`
sends images to a Triton server and gives what a local ``Detector`` gives."""
