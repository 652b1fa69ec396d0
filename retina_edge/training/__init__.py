"""Training the reference model (torch): the loop, checkpoints every N iterations, resume."""
