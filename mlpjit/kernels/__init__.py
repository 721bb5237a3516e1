"""Numba kernels: plain functions on arrays that write into the buffers they are given.

Layers, losses and optimizers validate and allocate; the kernels trust their input.
"""
