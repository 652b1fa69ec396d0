"""Quality checks over deployed models: the PyTorch reference's runs (``reference``), ``verify``,
``bench``, ``report`` and ``demo``."""
