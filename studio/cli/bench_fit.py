"""Placeholder: registers nothing yet."""


def add_command(bsub) -> None:
    pass
