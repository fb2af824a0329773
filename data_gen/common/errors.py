"""The one error type for invalid options: binaries print it as one line and exit non-zero."""


class OptionError(ValueError):
  """An option is outside its allowed range. `str()` names the option and what is allowed."""

  def __init__(self, option: str, message: str):
    self.option = option
    super().__init__(f"--{option}: {message}")


def require(condition: bool, option: str, message: str) -> None:
  if not condition:
    raise OptionError(option, message)


def check_fraction(value: float, option: str) -> None:
  require(0.0 <= value <= 1.0, option, f"must be a fraction in [0, 1], got {value}")


def check_positive(value: int, option: str) -> None:
  require(int(value) == value and value >= 1, option, f"must be an integer >= 1, got {value}")
