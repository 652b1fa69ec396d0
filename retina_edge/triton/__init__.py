"""Serving deployed models with NVIDIA Triton Inference Server: model repositories
(:mod:`.repository`, with the Python-backend model :mod:`.backend_model`) and the server process
(:mod:`.server`). The client, :class:`retina_edge.runtime.TritonDetector`, is in the runtime."""
