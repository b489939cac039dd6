"""Placeholder: ``studio train neural`` / ``studio eval neural`` register here."""


def add_commands(sub) -> None:
    pass
