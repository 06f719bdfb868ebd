"""clipvqd: language-free text-to-image generation, reproduced and benchmarked.

The package holds every rule's real work; the Snakemake workflow only wires it together.
"""

__version__ = "0.1.0"
