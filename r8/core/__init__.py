"""The bottom layer: errors, where files live, the machine and its threads, the console, the
verified artifact cache and batch slicing. It imports nothing else of r8's."""
