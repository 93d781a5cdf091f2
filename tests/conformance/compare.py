#!/usr/bin/env python3
"""Fails unless every host's conformance transcript is the same.

Usage: compare.py [DIR]   (default: target/conformance)

Each runner writes DIR/<host>.json (README "Transcripts"). Meeting the
expectations is not enough: two hosts must also return the same values
everywhere else, error messages included.
"""

import json
import pathlib
import sys

HOSTS = ["native", "wasmtime", "postgres", "node", "python"]
# The delivery scenarios (delivery/) run where the component's `delivery`
# interface (or the core it wraps) is: natively, in Node and in Python.
DELIVERY_HOSTS = ["native", "node", "python"]


def main() -> int:
    here = pathlib.Path(__file__).resolve().parent
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else here.parent.parent / "target" / "conformance"
    status = compare(here, out, HOSTS, "")
    return status or compare(here / "delivery", out, DELIVERY_HOSTS, "-delivery")


def compare(here: pathlib.Path, out: pathlib.Path, hosts: list, suffix: str) -> int:
    """Compare the transcripts DIR/<host><suffix>.json of the scenarios in `here`."""
    HOSTS = hosts
    scenarios = sorted(p.name for p in here.glob("*.json"))
    transcripts = {}
    for host in HOSTS:
        path = out / f"{host}{suffix}.json"
        if not path.exists():
            print(f"error: no transcript from the {host} runner at {path}", file=sys.stderr)
            return 1
        transcripts[host] = json.loads(path.read_text())
        if sorted(transcripts[host]) != scenarios:
            print(f"error: the {host} transcript covers {sorted(transcripts[host])}, not {scenarios}", file=sys.stderr)
            return 1
    reference = HOSTS[0]
    differences = 0
    for host in HOSTS[1:]:
        for name in scenarios:
            want, got = transcripts[reference][name], transcripts[host][name]
            for i in range(max(len(want), len(got))):
                a = want[i] if i < len(want) else None
                b = got[i] if i < len(got) else None
                if a != b:
                    differences += 1
                    print(f"{name} step {i}: {reference} and {host} differ\n"
                          f"  {reference}: {json.dumps(a)[:2000]}\n  {host}: {json.dumps(b)[:2000]}", file=sys.stderr)
                    break
    steps = sum(len(t) for t in transcripts[reference].values())
    if differences:
        print(f"conformance: hosts differ in {differences} scenario(s)", file=sys.stderr)
        return 1
    what = "delivery scenarios" if suffix else "scenarios"
    print(f"conformance: {len(HOSTS)} hosts ({', '.join(HOSTS)}) agree on {len(scenarios)} {what}, {steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
