"""``schema`` and ``bench``: the JSON Schemas veritrain publishes, and the benchmarks of bench/."""

from __future__ import annotations

import json
import sys

from veritrain.flows.commands import err
from veritrain.prover.errors import EXIT_ENV, EXIT_OK

BENCHES = (
    "commit_bench",
    "prover_bench",
    "orchestration_bench",
    "challenge_bench",
    "verify_bench",
    "prove_pool_bench",
    "report_bench",
    "verify_startup_bench",
    "canonical_bench",
    "prove_path_bench",
    "lm_bench",
    "shards_bench",
)


def cmd_schema(args) -> int:
    from veritrain.pipeline.run.spec import spec_json_schema
    from veritrain.pipeline.verify.policy import policy_json_schema
    from veritrain.pipeline.verify.verifier import VERIFY_JSON_SCHEMA

    schemas = {
        "spec": spec_json_schema,
        "verify": lambda: VERIFY_JSON_SCHEMA,
        "policy": policy_json_schema,
    }
    print(json.dumps(schemas[args.which](), indent=1))
    return EXIT_OK


def cmd_bench(args) -> int:
    """Runs bench/ modules in their own processes (each measures its baseline in the same run)."""
    import subprocess

    names = args.only or list(BENCHES)
    results: dict[str, list] = {}
    for name in names:
        print(f"bench {name} ...", file=sys.stderr)
        r = subprocess.run(
            [sys.executable, "-m", f"veritrain.bench.{name}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode
            err(f"bench/{name}.py failed: {last}")
            return EXIT_ENV
        lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
        results[name] = [json.loads(ln) if ln.startswith("{") else ln for ln in lines]
        if not args.json:
            print("\n".join(lines))
    if args.json:
        print(json.dumps(results, indent=1))
    return EXIT_OK


def add_schema(sub) -> None:
    sc = sub.add_parser(
        "schema", help="print a JSON Schema: the run spec, verify --json output or a policy file"
    )
    sc.add_argument("which", choices=["spec", "verify", "policy"])
    sc.set_defaults(fn=cmd_schema)


def add_bench(sub) -> None:
    b = sub.add_parser("bench", help="run the benchmarks of bench/ (ratios against baselines)")
    b.add_argument("--json", action="store_true")
    b.add_argument("--only", nargs="+", choices=BENCHES)
    b.set_defaults(fn=cmd_bench)
