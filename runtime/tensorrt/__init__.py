"""TensorRT support with no TensorRT import at module level: the engine file (header + plan), CUDA
memory through cuda-python, and the facts about TensorRT releases (compatibility, DLA, lean runtime).

The lowest wing of the runtime: it imports nothing else of ``retina_edge.runtime``.
"""
