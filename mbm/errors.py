"""The error every input check raises (kept free of heavy imports)."""


class InputError(ValueError):
    """An input the model cannot use; the message says why and what to do."""
