"""Placeholder: adds its File-menu actions here."""


def install(window, file_menu) -> None:
    pass
