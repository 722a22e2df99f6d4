"""The reference zoo of this repository: torchvision models against native Flax ports.

Each architecture family gets a folder here with its Flax definition and mapping table, and
registers its pairs for this repository's own parity runs. Not part of the installed plugin.
"""
