"""Measurements, run through the same code users run: inputs made hard on purpose (fuzzing the
loaders), figures with their baselines. The command line's ``studio bench …`` parses arguments and
calls in here."""
