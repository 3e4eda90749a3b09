"""The one exception the runner stops on: its message is printed as is, without a traceback."""


class BenchError(Exception):
    """The benchmark cannot go on, or its results would not mean what the table says."""
