"""Torch microbenchmarks that `capsim calibrate` runs to measure the local hardware."""
