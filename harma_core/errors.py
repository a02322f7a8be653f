"""The one error hierarchy of harma_core: messages name the bad value and the fix."""


class HarmaError(Exception):
    """Base class of every error harma_core raises on purpose."""


class UnknownModelError(HarmaError, ValueError):
    """A model name that is neither registered, an open_clip architecture, nor a local file."""


class WeightsUnavailableError(HarmaError, FileNotFoundError):
    """Pretrained weights that are not on disk and cannot be downloaded (offline)."""


class AdapterError(HarmaError, ValueError):
    """Adapter injection or loading that does not fit the model."""


class DataError(HarmaError, ValueError):
    """A dataset that cannot be read at all (single bad rows are reported and skipped instead)."""


class ConfigError(HarmaError, ValueError):
    """A training configuration that cannot run: conflicting, missing or out-of-range settings."""


class InputError(HarmaError, ValueError):
    """An argument of a library call that cannot be used, e.g. an empty query text or a non-RGB image."""
