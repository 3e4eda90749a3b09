"""The service's import package; every module is plain Python and imports without side effects."""
