"""Placeholder: registers nothing yet."""


def add_command(fsub) -> None:
    pass
