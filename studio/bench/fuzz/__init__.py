"""Seeded fuzzing of the loaders the CLI calls (``tests/test_fuzz_loaders.py``, ``studio bench fuzz``).

``seeds`` writes small valid inputs of every kind, ``mutate`` derives malformed ones from them,
``targets`` feeds one to its loader and says how it ended. The contract checked everywhere: a
loader either raises ``StudioError`` or succeeds, and what it accepted loads again.
"""
