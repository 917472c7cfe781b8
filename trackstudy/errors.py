"""Errors that reach the user as one clear line (the CLI prints them and exits with status 2)."""

from __future__ import annotations


class TrackstudyError(Exception):
    """Base class: the message says what is wrong and where (file, column, row, parameter)."""


class DataError(TrackstudyError, ValueError):
    """A TrackML file or event that is missing, malformed or inconsistent."""


class ConfigError(TrackstudyError, ValueError):
    """A parameter, option or configuration file that is invalid."""
