#!/usr/bin/env python3
"""Crate dependencies point one way: each workspace crate may depend only on crates of a lower
layer. A new crate must be given a layer here."""
import json
import subprocess
import sys

LAYERS = {
    "stratalake-crypto": 0,
    "stratalake-table": 1,
    "stratalake-query": 2,
    "stratalake-backup": 2,
    "stratalake-tiering": 2,
    "stratalake": 3,
    "stratalake-server": 4,
    "stratalake-cli": 5,
    "stratalake-benches": 5,
}

meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--no-deps", "--format-version", "1", "--offline"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
members = {p["name"] for p in meta["packages"]}
problems = []
for p in meta["packages"]:
    name = p["name"]
    if name not in LAYERS:
        problems.append(f"{name}: no layer in scripts/check-deps.py")
        continue
    for d in p["dependencies"]:
        if d["name"] in members and d.get("kind") != "dev":
            if LAYERS[d["name"]] >= LAYERS[name]:
                problems.append(
                    f"{name} (layer {LAYERS[name]}) depends on {d['name']} (layer {LAYERS[d['name']]})"
                )
for problem in problems:
    print(f"dependency direction: {problem}", file=sys.stderr)
sys.exit(1 if problems else 0)
