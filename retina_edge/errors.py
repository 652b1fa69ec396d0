"""Exceptions the library raises with messages meant for users; the CLI prints them (no torch)."""


class RetinaEdgeError(Exception):
    """Base of every error whose message tells the user what to do.

    The message uses the library's terms. ``option`` names the parameter(s) of the library call
    the error is about (e.g. ``"calibration"``, or ``("count", "batch_size")``), so a front end can
    point at its own spelling of them: the CLI adds its flag names (``--calib``).
    """

    def __init__(self, *args: object, option: str | tuple[str, ...] | None = None) -> None:
        super().__init__(*args)
        self.option = option

    @property
    def options(self) -> tuple[str, ...]:
        """``option`` as a tuple (empty when the error is about no parameter)."""
        if self.option is None:
            return ()
        return (self.option,) if isinstance(self.option, str) else tuple(self.option)


class WeightsError(RetinaEdgeError):
    """A checkpoint is missing, unreadable, or does not fit the requested architecture."""


class ConfigError(RetinaEdgeError, ValueError):
    """A model or training setting is unknown or out of range (also a ValueError, as Python expects)."""


class DataError(RetinaEdgeError, ValueError):
    """Input data (images, annotations, calibration sources) is missing or malformed."""


class MissingDependencyError(RetinaEdgeError):
    """An optional package needed for the requested feature is not installed."""

    def __init__(self, package: str, feature: str, install: str) -> None:
        super().__init__(f"{feature} needs the '{package}' package, which is not installed; install it with: {install}")
        self.package = package


class SourceLostError(RetinaEdgeError):
    """A live source failed for good (after its reconnect attempts): exit code 1, not a usage error."""

    exit_code = 1


class BudgetNotMetError(RetinaEdgeError):
    """An accuracy search ended without meeting its budget (the best model was still written): exit 1."""

    exit_code = 1
