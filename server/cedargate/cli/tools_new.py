"""``cedargate tools new aws SERVICE OPERATION --risk LEVEL``: a starting manifest from the service model."""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

from pydantic import ValidationError

from cedargate.catalog import files_under
from cedargate.cli._common import writable_file, write_file
from cedargate.errors import ConfigError, ManifestError, describe_validation_error
from cedargate.risk import Risk


def register_new(tools: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    new = tools.add_parser(
        "new",
        help="write a starting manifest for an AWS operation",
        description=(
            "Write a manifest for an AWS operation from botocore's service model, for an admin to edit: "
            "required parameters are allowed, the others are listed commented out."
        ),
    )
    new.add_argument("kind", choices=["aws"], help="the handler family (only `aws` is generated)")
    new.add_argument("service", help="botocore service name, e.g. `ec2`")
    new.add_argument("operation", help="operation name in CamelCase, e.g. `StopInstances`")
    new.add_argument("--risk", required=True, choices=[r.value for r in Risk], help="the tool's risk level")
    new.add_argument("--duty", help="duty identity (default: `aws-reader` for reads, `infra-operator` otherwise)")
    new.add_argument("--owner", default="platform", help="owning team (default: platform)")
    new.add_argument("--output", metavar="PATH", help="file to write (default: TOOLS_DIR/aws/NAME.toml)")
    new.add_argument("--force", action="store_true", help="overwrite an existing file")
    new.add_argument("--json", action="store_true", help="print the result as JSON")
    new.set_defaults(run=run_new)


def run_new(args: argparse.Namespace) -> int:
    from cedargate.aws_manifest_template import render_manifest, tool_name

    risk = Risk(args.risk)
    duty = args.duty or ("aws-reader" if risk is Risk.READ else "infra-operator")
    _refuse_unconfigured_duty(args, duty)
    try:
        text = render_manifest(args.service, args.operation, risk, duty, args.owner)
    except ValueError as exc:
        raise ManifestError(str(exc)) from exc
    except ValidationError as exc:
        raise ManifestError(f"the generated manifest does not load: {describe_validation_error(exc)}") from exc
    name = tool_name(args.service, args.operation)
    path = Path(args.output) if args.output else _tools_dir(args) / "aws" / f"{name}.toml"
    flag = "--output" if args.output else "manifest"
    _refuse_a_published_name(args, name, path)
    writable_file(path, flag, create_folder=True)  # a folder is never overwritten, --force or not
    if path.exists() and not args.force:
        raise ConfigError(f"`{path}` exists: pass --force to overwrite it or --output to write elsewhere")
    write_file(path, text, flag, create_folder=True)
    if args.json:
        print(json.dumps({"name": name, "path": str(path), "duty": duty, "risk": risk.value}))
    else:
        print(f"wrote {path}: tool `{name}` ({risk.value}, duty `{duty}`)")
        print(
            "next: allow parameters and set a result projection, run `cedargate policy validate`, "
            "and with a tools lock configured, `cedargate tools lock` once the manifest is reviewed"
        )
    return 0


def _refuse_unconfigured_duty(args: argparse.Namespace, duty: str) -> None:
    """A manifest naming a duty the config lacks would stop `serve`; say so before writing it.

    Without a loadable config (``--output`` elsewhere) there is nothing to check against.
    """
    from cedargate.cli._common import config_from

    try:
        duties = config_from(args).aws.duties
    except ConfigError:
        if args.output:
            return
        raise
    if duty not in duties:
        known = ", ".join(f"`{d}`" for d in duties) or "none"
        raise ConfigError(
            f"--duty `{duty}` is not configured (configured: {known}): add `[aws.duties.{duty}]` to the config "
            "or pick one of those; nothing was written"
        )


def _refuse_a_published_name(args: argparse.Namespace, name: str, path: Path) -> None:
    """A second manifest publishing ``name`` in the tools folder would stop start-up; say so before writing.

    Overwriting the very file that publishes it (``--force``) is allowed, and so is a file
    written outside the tools folder (nothing loads it there). Without a loadable config
    (``--output`` elsewhere) there is nothing to check against.
    """
    from cedargate.cli._common import config_from

    try:
        tools_dir = config_from(args).tools_dir.resolve()
    except ConfigError:
        return
    target = path.resolve()
    if not target.is_relative_to(tools_dir):
        return
    publisher = published_names(tools_dir).get(name)
    if publisher is not None and publisher != target:
        raise ConfigError(
            f"tool `{name}` is already published by `{publisher}`: a tool name may be published once only; "
            "edit that file, or write with --output outside the tools folder and rename the tool "
            "before moving it in; nothing was written"
        )


def published_names(tools_dir: Path) -> dict[str, Path]:
    """Each tool name the manifests under ``tools_dir`` publish, and the file publishing it.

    Read as TOML only (no schema is derived): quick, and a file that does not load stops
    start-up with its own error anyway.
    """
    names: dict[str, Path] = {}
    for path in files_under(tools_dir, ".toml", ManifestError):
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        entries = raw["tool"] if isinstance(raw.get("tool"), list) else [raw]
        for entry in entries:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                names.setdefault(entry["name"], path.resolve())
    return names


def _tools_dir(args: argparse.Namespace) -> Path:
    from cedargate.cli._common import config_from

    try:
        return config_from(args).tools_dir
    except ConfigError as exc:
        raise ConfigError(f"{exc}; or pass --output PATH") from exc
