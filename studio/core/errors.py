"""The one exception type users see: its message is a single line saying what is wrong."""


class StudioError(Exception):
    """A problem with the user's input or environment, reported as one line (no traceback)."""

    def __init__(self, message: str):
        # Keep it to one line whatever the caller passed, so CLI and GUI can show it as is.
        super().__init__(" ".join(str(message).split()))


class FitFailed(StudioError):
    """The input was readable but the fit could not find the model in it (a sphere, a hand-sized
    object): not bad input (status 2) but a failed fit (status 3, like a fit judged wrong)."""

    exit_status = 3
