"""Command-line building blocks: a parser whose errors are one line, and range-checked numeric option types.

p = OneLineErrorParser(...)
p.add_argument("--workers", type=int_in_range(0))
p.add_argument("--log-every", type=int_in_range(1), default=50)
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from harness.flag_hints import close_option, unrecognized_hint

# Python spells this "invalid choice: 'huge' (choose from 'full', 'proxy', 'smoke')" up to 3.11 and without the
# quotes around the choices from 3.12.
_INVALID_CHOICE = re.compile(r"invalid choice: (?P<value>'[^']*') \(choose from (?P<choices>.*)\)$")
_UNRECOGNIZED = "unrecognized arguments: "


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage block): `error: ...; see --help`, exit 2.

    The error leaves as SystemExit carrying that line, so `harness.run.main` can print it and return 2. With
    `hint_unrecognized`, an unrecognized timm or torchvision flag is answered with the harness's way to say it
    (harness.flag_hints) and a near miss of one of this parser's options with that option."""

    def __init__(self, *args, hint_unrecognized: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hint_unrecognized = hint_unrecognized

    def error(self, message: str) -> None:  # type: ignore[override]
        match = _INVALID_CHOICE.search(message)
        if match:
            choices = match["choices"].replace("'", "")
            message = f"{message[: match.start()]}invalid choice {match['value']} (choose from {choices})"
        if self.hint_unrecognized and message.startswith(_UNRECOGNIZED):
            tokens = message[len(_UNRECOGNIZED) :].split()
            hint = unrecognized_hint(tokens)
            if hint:
                raise SystemExit(f"error: {hint}")
            close = close_option(tokens, [option for action in self._actions for option in action.option_strings])
            if close:
                raise SystemExit(f"error: {message}; did you mean {close}?")
        raise SystemExit(f"error: {message}; see --help")


def int_in_range(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse `type=` for an integer in [minimum, maximum]; argparse names the option in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{value} is out of range; {describe_range(minimum, maximum)}")
        return value

    parse.__name__ = "integer"
    return parse


def describe_range(minimum: int, maximum: int | None) -> str:
    return f"expected an integer >= {minimum}" if maximum is None else f"expected an integer in {minimum}..{maximum}"
