#!/usr/bin/env bash
# Validates the state machine definition (Amazon States Language) with the
# asl-validator pinned in tools/package.json (install it first with
# `npm ci --prefix tools`, or run scripts/lint-infra.sh which does).
#
# Four checks:
#  1. asl-validator on the file as it is in the repo. asl-validator accepts a
#     Task Resource that is exactly one `${Name}` placeholder (its
#     "substitution before deployment" extension), so this checks the whole
#     structure, paths and transitions.
#  2. Retriers, catchers and timeouts against the States Language spec
#     (field names, ranges, JitterStrategy, States.ALL alone and last), which
#     asl-validator 4.0.0 does not check.
#  3. Every `${Name}` in the definition is a key of the state machine's
#     DefinitionSubstitutions in template.yaml (a misspelt one would otherwise
#     only fail at deploy time), and every key is used.
#  4. asl-validator again on a copy with each placeholder replaced by a dummy
#     Lambda function ARN, so the ARN check runs on what CloudFormation will
#     actually hand to Step Functions. The copy lives in a temporary directory
#     outside the repo, removed on exit.
#
# Usage: scripts/asl-check.sh [definition.asl.json] [template.yaml]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
asl="${1:-$root/infra/statemachine/deployment.asl.json}"
template="${2:-$root/template.yaml}"
validator="$root/tools/node_modules/.bin/asl-validator"

if [[ ! -x "$validator" ]]; then
    echo "asl-check: $validator is missing; run: npm ci --prefix tools" >&2
    exit 2
fi

echo "asl-check: asl-validator $("$validator" --version) on $asl"
"$validator" --json-path "$asl"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/asl-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
resolved="$tmp/$(basename "$asl")"

# Node is there anyway (asl-validator needs it); it reads the keys under
# DefinitionSubstitutions by indentation, as template.yaml uses CloudFormation
# tags (!GetAtt) that plain YAML parsers reject.
node - "$asl" "$template" "$resolved" <<'EOF'
const fs = require("fs");
const [aslPath, templatePath, outPath] = process.argv.slice(2);

const text = fs.readFileSync(aslPath, "utf8");

// asl-validator 4.0.0 does not check retriers and catchers beyond their
// ErrorEquals (it accepts unknown fields, BackoffRate < 1, IntervalSeconds 0,
// any JitterStrategy, States.ALL mixed with other names or not last). Check
// them against the States Language spec and the Step Functions docs.
const problems = [];
const isInt = (v, min, max) => Number.isInteger(v) && v >= min && v <= max;
const checkList = (where, kind, list, allowed) => {
  if (!Array.isArray(list) || list.length === 0) {
    problems.push(`${where}: ${kind} must be a non-empty array`);
    return;
  }
  list.forEach((r, i) => {
    const at = `${where}: ${kind}[${i}]`;
    for (const k of Object.keys(r)) if (!allowed.includes(k)) problems.push(`${at}: unknown field ${k}`);
    const errs = r.ErrorEquals;
    if (!Array.isArray(errs) || errs.length === 0 || !errs.every((e) => typeof e === "string" && e)) {
      problems.push(`${at}: ErrorEquals must be a non-empty array of error names`);
    } else if (errs.includes("States.ALL") && (errs.length > 1 || i !== list.length - 1)) {
      problems.push(`${at}: States.ALL must appear alone, in the last ${kind === "Retry" ? "retrier" : "catcher"}`);
    }
    if (kind === "Retry") {
      if ("IntervalSeconds" in r && !isInt(r.IntervalSeconds, 1, 99999999)) problems.push(`${at}: IntervalSeconds must be an integer 1..99999999`);
      if ("MaxAttempts" in r && !isInt(r.MaxAttempts, 0, 99999999)) problems.push(`${at}: MaxAttempts must be an integer 0..99999999`);
      if ("BackoffRate" in r && !(typeof r.BackoffRate === "number" && r.BackoffRate >= 1)) problems.push(`${at}: BackoffRate must be a number >= 1.0`);
      if ("MaxDelaySeconds" in r && !isInt(r.MaxDelaySeconds, 1, 31622399)) problems.push(`${at}: MaxDelaySeconds must be an integer 1..31622399`);
      if ("JitterStrategy" in r && !["FULL", "NONE"].includes(r.JitterStrategy)) problems.push(`${at}: JitterStrategy must be FULL or NONE`);
    } else if (typeof r.Next !== "string" || !r.Next) {
      problems.push(`${at}: Next is required`);
    }
  });
};
const RETRIER = ["ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy", "Comment"];
const CATCHER = ["ErrorEquals", "Next", "ResultPath", "Comment", "Output", "Assign"];
const walk = (machine, prefix) => {
  if ("TimeoutSeconds" in machine && !isInt(machine.TimeoutSeconds, 1, 99999999)) problems.push(`${prefix || "state machine"}: TimeoutSeconds must be a positive integer`);
  for (const [name, st] of Object.entries(machine.States || {})) {
    const where = `${prefix}"${name}"`;
    if ("Retry" in st) checkList(where, "Retry", st.Retry, RETRIER);
    if ("Catch" in st) checkList(where, "Catch", st.Catch, CATCHER);
    if ("TimeoutSeconds" in st && !isInt(st.TimeoutSeconds, 1, 99999999)) problems.push(`${where}: TimeoutSeconds must be a positive integer`);
    for (const [i, b] of (st.Branches || []).entries()) walk(b, `${where} branch ${i} / `);
    const inner = st.ItemProcessor || st.Iterator;
    if (inner) walk(inner, `${where} items / `);
  }
};
walk(JSON.parse(text), "");
if (problems.length) {
  console.error("asl-check: retrier/catcher problems:\n  " + problems.join("\n  "));
  process.exit(1);
}
console.log("asl-check: retriers, catchers and timeouts conform to the States Language");

const lines = fs.readFileSync(templatePath, "utf8").split(/\r?\n/);
const start = lines.findIndex((l) => /^\s*DefinitionSubstitutions:\s*$/.test(l));
if (start < 0) {
  console.error(`asl-check: no DefinitionSubstitutions in ${templatePath}`);
  process.exit(1);
}
const indent = (l) => l.match(/^ */)[0].length;
const base = indent(lines[start]);
const keys = new Set();
let keyIndent = null;
for (const line of lines.slice(start + 1)) {
  if (/^\s*(#.*)?$/.test(line)) continue;
  const n = indent(line);
  if (n <= base) break;
  keyIndent ??= n;
  const m = line.match(/^\s*([A-Za-z0-9_]+)\s*:/);
  if (n === keyIndent && m) keys.add(m[1]);
}

const used = new Set([...text.matchAll(/\$\{([^}]*)\}/g)].map((m) => m[1]));
const unknown = [...used].filter((k) => !keys.has(k));
const unused = [...keys].filter((k) => !used.has(k));
if (unknown.length) {
  console.error(`asl-check: placeholders not in DefinitionSubstitutions: ${unknown.join(", ")}`);
  process.exit(1);
}
if (unused.length) {
  console.error(`asl-check: DefinitionSubstitutions keys the definition never uses: ${unused.join(", ")}`);
  process.exit(1);
}

// Dummy but well-formed Lambda ARNs (documentation account id).
const arn = (k) => `arn:aws:lambda:us-east-1:123456789012:function:autosky-${k.replace(/Arn$/, "")}`;
fs.writeFileSync(outPath, text.replace(/\$\{([^}]*)\}/g, (_, k) => arn(k)));
console.log(`asl-check: ${used.size} placeholders, all in DefinitionSubstitutions: ${[...used].sort().join(", ")}`);
EOF

echo "asl-check: asl-validator on the definition with dummy Lambda ARNs substituted"
"$validator" --json-path "$resolved"
