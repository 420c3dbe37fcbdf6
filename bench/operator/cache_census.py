#!/usr/bin/env python3
"""cache_census.py NAMESPACE - what nutshell-operator's Canary controller holds for a
namespace, kind by kind: object count, JSON size, and an estimate of the heap the same
objects take as the cJSON trees its informers cache (managedFields dropped, as the
informers do). Pods are listed too, for scale: the controller does not cache them but
LISTs them (by label) on every reconcile.

The estimate: one 64-byte cJSON node per value, plus a malloc for every object key and
string value; a glibc chunk is max(32, (n + 8 + 15) & ~15) bytes. Allocator overhead
beyond that (arenas, fragmentation) is not counted. Uses kubectl from PATH.
"""
import json
import subprocess
import sys

# (kind, label selector) as the controller's informers watch them (canary_controller.c).
CACHED = [
    ("canaries.nutshell.io", None),
    ("deployments.apps", None),
    ("services", "nutshell.io/canary"),
    ("endpointslices.discovery.k8s.io", "nutshell.io/canary"),
]
LISTED = [("pods", None)]


def chunk(n):
    return max(32, (n + 8 + 15) & ~15)


def walk(value, key=None):
    """(nodes, bytes of key and string allocations) of one JSON value as cJSON."""
    nodes, strs = 1, 0
    if key is not None:
        strs += chunk(len(key.encode()) + 1)
    if isinstance(value, dict):
        for k, v in value.items():
            a, b = walk(v, k)
            nodes, strs = nodes + a, strs + b
    elif isinstance(value, list):
        for v in value:
            a, b = walk(v)
            nodes, strs = nodes + a, strs + b
    elif isinstance(value, str):
        strs += chunk(len(value.encode()) + 1)
    return nodes, strs


def census(ns, kind, selector):
    cmd = ["kubectl", "-n", ns, "get", kind, "-o", "json"]
    if selector:
        cmd += ["-l", selector]
    items = json.loads(subprocess.check_output(cmd, timeout=120))["items"]
    size = nodes = strs = 0
    for item in items:
        item.get("metadata", {}).pop("managedFields", None)
        size += len(json.dumps(item, separators=(",", ":")))
        a, b = walk(item)
        nodes, strs = nodes + a, strs + b
    return len(items), size, nodes, nodes * chunk(64) + strs


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: cache_census.py NAMESPACE")
    ns = sys.argv[1]
    total = 0
    for role, kinds in (("cached", CACHED), ("LISTed", LISTED)):
        for kind, selector in kinds:
            n, size, nodes, heap = census(ns, kind, selector)
            if role == "cached":
                total += heap
            per = max(n, 1)
            name = kind + (" -l " + selector if selector else "")
            print("  %-6s %-52s %5d objects: JSON %5.2f MiB (%5.0f B each); as cJSON "
                  "%4.0f nodes, ~%5.0f B of heap each: %5.2f MiB"
                  % (role, name, n, size / 2**20, size / per, nodes / per, heap / per,
                     heap / 2**20))
    print("  the informer caches by this estimate: ~%.1f MiB of heap" % (total / 2**20))


if __name__ == "__main__":
    main()
