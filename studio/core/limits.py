"""Size limits on what the studio reads, declared once.

Every reader of a user's file takes its bounds from here, so a crafted input is refused by size
before anything is decompressed or allocated. The values leave a wide margin over the largest
real inputs: the ICT-FaceKit's biggest OBJ is ~3 MB and its whole FaceXModel ~350 MB unpacked;
a BFM 2019 model is ~1 GB; the ICT model file's largest array (the expression basis) ~220 MB.
"""

from __future__ import annotations

MiB = 1024 * 1024
GiB = 1024 * MiB

# Archives (studio.core.archive): one member, and everything extracted from one archive.
ARCHIVE_MEMBER_BYTES = 256 * MiB
ARCHIVE_TOTAL_BYTES = 2 * GiB
ARCHIVE_MEMBERS = 10_000  # entries looked at in one archive (a zip's central directory can list millions)

# One array in a Face Studio model file (model.npz), uncompressed, and all of them together.
MODEL_ARRAY_BYTES = 1 * GiB
MODEL_BYTES = 4 * GiB

# A FLAME pickle, read into memory whole before unpickling.
PICKLE_BYTES = 1 * GiB

# JSON documents (studio.core.jsonio).
JSON_BYTES = 64 * MiB  # a 100k-point landmark file is ~5 MB
JSON_DEPTH = 64  # nesting levels; the studio's own documents use fewer than 8
JSON_NUMBER_CHARS = 64  # characters in one number literal (float64 needs 17 significant digits)

# Neural checkpoints: a configuration is refused if its network would exceed this many parameters
# (the shipped head has 0.69 M), before any tensor is allocated.
NEURAL_PARAMETERS = 50_000_000
