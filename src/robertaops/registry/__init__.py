"""Model registry: MLflow-backed versions with lineage tags, aliases (staging / production / archived), model cards,
and `models:/NAME@alias` resolution for the server. Manifests themselves live in model/manifest.py (the loader
checks them); the registry records and re-verifies them.
"""

from __future__ import annotations

from .store import ALIASES, Registry, default_uri, is_registry_uri, parse_uri

__all__ = ["ALIASES", "Registry", "default_uri", "is_registry_uri", "parse_uri"]
