"""Keras files (Keras 2 and 3 ``.h5``, ``.keras``): the reader (h5py and zipfile alone), one
converter per layer type, and the TensorFlow reference that the suite compares against."""
