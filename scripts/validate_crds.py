#!/usr/bin/env python3
"""Validate custom resources in rendered manifests against vendored JSON Schemas.

kubernetes-validate checks the built-in kinds but only warns about kinds it has no
schema for (ServiceMonitor, PrometheusRule, ...). This script closes that gap:

* every document whose apiVersion/kind matches a schema in k8s/schemas/ (named by
  its ``x-kubernetes-group-version-kind`` key) is validated against it;
* every other document must be a kind kubernetes-validate knows for the given
  Kubernetes version, so nothing in the rendered output goes unchecked.

Nothing is downloaded: the schemas live in the repository.

    validate_crds.py --kubernetes-version 1.30.0 rendered.yaml [more.yaml ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from kubernetes_validate import utils as kv_utils

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SCHEMAS = ROOT / "k8s" / "schemas"


@dataclass(frozen=True)
class Schema:
    path: Path
    validator: Draft202012Validator


def load_schemas(directory: Path) -> dict[tuple[str, str], Schema]:
    """Map (apiVersion, kind) to the validator of each schema file in ``directory``."""
    schemas: dict[tuple[str, str], Schema] = {}
    for path in sorted(directory.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(document)
        validator = Draft202012Validator(document)
        for gvk in document.get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            schemas[(api_version, gvk["kind"])] = Schema(path, validator)
    return schemas


def describe(resource: dict[str, Any]) -> str:
    name = (resource.get("metadata") or {}).get("name", "<unnamed>")
    return f"{resource.get('kind', '<no kind>')}/{name}"


def is_builtin(resource: dict[str, Any], kubernetes_version: str) -> bool:
    """True when kubernetes-validate has a schema for this kind at this version."""
    try:
        kv_utils.validate(resource, kubernetes_version, strict=False)
    except kv_utils.SchemaNotFoundError:
        return False
    except kv_utils.ValidationError:
        # Known kind with errors: kubernetes-validate --strict reports those itself.
        return True
    return True


def validate_file(
    path: Path,
    schemas: dict[tuple[str, str], Schema],
    schema_dir: Path,
    kubernetes_version: str,
) -> list[str]:
    errors: list[str] = []
    with path.open(encoding="utf-8") as fh:
        documents = [doc for doc in yaml.safe_load_all(fh) if doc is not None]
    for resource in documents:
        if not isinstance(resource, dict):
            errors.append(f"{path}: a document is not a mapping: {resource!r:.80}")
            continue
        key = (str(resource.get("apiVersion", "")), str(resource.get("kind", "")))
        schema = schemas.get(key)
        if schema is None:
            if not is_builtin(resource, kubernetes_version):
                errors.append(
                    f"{path}: {describe(resource)} ({key[0]}): no schema in "
                    f"{schema_dir} and not a Kubernetes {kubernetes_version} built-in kind"
                )
            continue
        found = sorted(
            schema.validator.iter_errors(resource),
            key=lambda e: [str(part) for part in e.absolute_path],
        )
        for error in found:
            location = ".".join(str(part) for part in error.absolute_path) or "<root>"
            errors.append(f"{path}: {describe(resource)}: {location}: {error.message}")
        if not found:
            print(f"OK    {path}: {describe(resource)} against {schema.path.name}")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="rendered multi-document YAML")
    parser.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMAS)
    parser.add_argument(
        "-k",
        "--kubernetes-version",
        required=True,
        help="version whose built-in kinds need no vendored schema, e.g. 1.30.0",
    )
    args = parser.parse_args(argv)

    schemas = load_schemas(args.schemas)
    if not schemas:
        print(f"ERROR no schemas found in {args.schemas}", file=sys.stderr)
        return 1
    errors: list[str] = []
    for path in args.files:
        errors.extend(validate_file(path, schemas, args.schemas, args.kubernetes_version))
    for line in errors:
        print(f"ERROR {line}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
