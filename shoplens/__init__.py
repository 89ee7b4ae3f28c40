"""Shoplens: self-hosted visual product search and AR try-on assets."""

__version__ = "0.1.0"
