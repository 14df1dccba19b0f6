"""How an audit check ends when it does not pass: refuted (the certificate is wrong) or
undecided (a time limit); both name the first item that failed."""

from __future__ import annotations


class Refuted(Exception):
    """The certificate does not hold: the message names the first failing item."""


class Undecided(Exception):
    """A claim could be neither proven nor refuted within the time limit."""



__all__ = ["Refuted", "Undecided"]
