#!/usr/bin/env python3
"""The service registry (services/registry.txt) for scripts and k8s.

usage:
  scripts/registry.py list         name grpc_port admin_port, one service a line
  scripts/registry.py k8s          rewrites k8s/base/registry.env and the
                                   resources of k8s/base/kustomization.yaml
  scripts/registry.py k8s --check  exits 1 (saying what differs) when they are
                                   not what the registry makes (a ctest test)
Python standard library only.
"""
import os
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
REGISTRY = os.path.join(ROOT, "services", "registry.txt")
K8S = os.path.join(ROOT, "k8s", "base")
BEGIN, END = "  # BEGIN services (scripts/registry.py k8s)", "  # END services"
K8S_GRPC_PORT = 50051  # every service listens on this port in its pod


def load(path=REGISTRY):
    """[(name, grpc_port, admin_port)] in file order."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, grpc, admin = line.split()
            out.append((name, int(grpc), int(admin)))
    return out


def k8s_files(services):
    env = "".join(f"{n.upper()}_ADDR={n}:{K8S_GRPC_PORT}\n" for n, _, _ in services)
    env = "# generated from services/registry.txt by scripts/registry.py k8s; do not edit\n" + env
    with open(os.path.join(K8S, "kustomization.yaml"), encoding="utf-8") as f:
        kust = f.read()
    head, rest = kust.split(BEGIN + "\n", 1)
    _, tail = rest.split(END + "\n", 1)
    body = "".join(f"  - {n}.yaml\n" for n, _, _ in services)
    return {"registry.env": env, "kustomization.yaml": head + BEGIN + "\n" + body + END + "\n" + tail}


def main(argv):
    services = load()
    if argv[1:2] == ["list"]:
        for n, g, a in services:
            print(n, g, a)
        return 0
    if argv[1:2] == ["k8s"]:
        check = "--check" in argv
        bad = 0
        for name, text in k8s_files(services).items():
            path = os.path.join(K8S, name)
            cur = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
            if cur == text:
                continue
            if check:
                print(f"k8s/base/{name} is not what services/registry.txt makes: run scripts/registry.py k8s")
                bad = 1
            else:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
        for n, _, _ in services:
            if not os.path.exists(os.path.join(K8S, f"{n}.yaml")):
                print(f"k8s/base/{n}.yaml is missing (every service of the registry needs one)")
                bad = 1
        return bad
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
