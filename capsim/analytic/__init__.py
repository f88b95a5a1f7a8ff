"""The analytical model: parameters, FLOPs, bytes, memory, the op list, step and iteration times."""
