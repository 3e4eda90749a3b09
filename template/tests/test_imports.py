"""Importing the package builds nothing: apps, settings and clients exist only once started."""

import importlib
import pkgutil

import httpx2
from fastapi import FastAPI

import app
from app.settings import Settings


def test_no_module_creates_an_app_settings_or_client_at_import() -> None:
    for module_info in pkgutil.walk_packages(app.__path__, prefix="app."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            assert not isinstance(value, FastAPI | Settings | httpx2.AsyncClient), (
                f"{module_info.name}.{name} is built at import time"
            )
