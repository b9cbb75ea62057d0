"""A throw-away cedargate tree for benchmarks: repositories, tools, policies and a config.

The trivial tool ``bench_noop`` is a read of a configured repository whose handler does no
work, so what a call costs is the transport and the governance around it. The scale runs add
``n`` generated repositories (in ``n // 10`` teams) and ``n`` generated policies, all of which
validate against the schema cedargate generates from the manifests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cedargate.demo import DEV_REPO, project_root, write_demo_tree

NOOP_TOOL = "bench_noop"
ENVIRONMENTS = ("dev", "staging", "prod")

_NOOP_MANIFEST = f"""# Benchmark only: a read whose handler does nothing, to measure what governance costs.
name = "{NOOP_TOOL}"
description = "Does nothing; used to measure the cost of a governed call."
risk = "read"
owner = "bench"
duty = "repo-reader"

[handler]
kind = "repo"
operation = "noop"

[resource]
kind = "repository"
argument = "repository"

[input_schema]
type = "object"
required = ["repository"]

[input_schema.properties.repository]
type = "string"
description = "Repository name as configured."
"""


def generated_repo(i: int) -> str:
    return f"gen/repo-{i}"


def generated_policies(n: int) -> str:
    """``n`` policies in four shapes (agent/repository permits, team permits, forbids with conditions)."""
    teams = max(1, n // 10)
    out = []
    for i in range(n):
        repo, team, env = generated_repo(i), f"team-{i % teams}", ENVIRONMENTS[i % 3]
        shape = i % 4
        if shape == 0:
            body = (
                f'permit (principal == Agent::"agent-{i}", action == Action::"{NOOP_TOOL}", '
                f'resource == Repository::"{repo}");'
            )
        elif shape == 1:
            body = (
                f'permit (principal in Team::"{team}", action == Action::"repo_read_file", '
                f'resource in Environment::"{env}") when {{ context.args.path like "docs/*" }};'
            )
        elif shape == 2:
            body = (
                f'forbid (principal, action in Action::"risk:write", resource == Repository::"{repo}") '
                f'when {{ context.mode == "autonomous" && context.session.call_count > {i % 50 + 10} }};'
            )
        else:
            body = (
                f'forbid (principal == Agent::"agent-{i}", action in Action::"risk:destructive", '
                f'resource in Environment::"{env}") unless {{ context.approval.granted }};'
            )
        out.append(f'@id("gen-{i}")\n@reason("generated policy {i}")\n{body}\n')
    return "\n".join(out)


def _repositories_toml(n: int) -> str:
    teams = max(1, n // 10)
    blocks = []
    for i in range(n):
        blocks.append(
            f'[[repositories]]\nname = "{generated_repo(i)}"\npath = "repos/gen-{i}"\n'
            f'environment = "{ENVIRONMENTS[i % 3]}"\nowner_team = "team-{i % teams}"\n'
        )
    return "\n".join(blocks)


def make_tree(workdir: Path, *, scale: int = 0, noop: bool = True) -> Path:
    """Write the tree under ``workdir`` and return its config path.

    ``noop`` adds the ``bench_noop`` manifest (served by ``bench.noop``'s handlers, not by
    ``cedargate serve``); ``scale`` adds that many repositories and policies.
    """
    root = project_root()
    demo_config = write_demo_tree(workdir)
    shutil.copytree(root / "tools", workdir / "tools", dirs_exist_ok=True)
    shutil.copytree(root / "policies", workdir / "policies", dirs_exist_ok=True)
    if noop:
        (workdir / "tools" / "bench").mkdir(exist_ok=True)
        (workdir / "tools" / "bench" / "noop.toml").write_text(_NOOP_MANIFEST, encoding="utf-8")
    if scale:
        (workdir / "policies" / "generated.cedar").write_text(generated_policies(scale), encoding="utf-8")
    text = demo_config.read_text(encoding="utf-8")
    text = text.replace(json.dumps(str(root / "tools")), '"tools"').replace(
        json.dumps(str(root / "policies")), '"policies"'
    )
    # The sandbox account is never called by the benchmarks; "real" keeps moto out of the server.
    text = text.replace('mode = "sandbox"', 'mode = "real"')
    demo_config.write_text(text + "\n" + _repositories_toml(scale), encoding="utf-8")
    return demo_config


NOOP_ARGS = {"repository": DEV_REPO}
