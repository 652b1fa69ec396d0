"""The ``retina-edge`` command line: thin wrappers over library functions, one module per command."""
