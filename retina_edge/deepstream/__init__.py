"""DeepStream without C++: the folder ``retina-edge deepstream`` writes (a ``deepstream`` graph for the
stock parser, nvinfer/nvinferserver/deepstream-app configs) and the release guard."""
