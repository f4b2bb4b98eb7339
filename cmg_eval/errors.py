"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class CmgError(Exception):
    """A user-facing error: bad input, unknown name, failed check. The message is one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UnsupportedModality(CmgError):
    """The encoder cannot encode this modality (e.g. text without an LSTM in the checkpoint)."""
