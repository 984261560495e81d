"""envcheck: why is TensorFlow not using the GPU? Answered for a whole matrix of stacks."""

__version__ = "0.1.0"
