"""``lnpstore check STORE``: verify every live file of a store and say what to re-run."""

from __future__ import annotations

import argparse


def cmd_check(args: argparse.Namespace) -> int:
    from lnpstore.store.core import Store

    if args.repair:
        fixed = Store.repair_marker(args.store)
        if fixed:
            print(f"repaired: {fixed}")
    store = Store.open(args.store)
    problems = store.check(deep=args.deep)
    if args.repair:
        for line in store.repair():
            print(f"repaired: {line}")
        redo = sorted({p["redo"] for p in problems if p["redo"] and p["file"].endswith(".parquet")})
        for cmd in redo:
            print(f"now re-run {cmd} to redo what was dropped (`lnpstore run` redoes every stage)")
        problems = store.check(deep=args.deep)
    n_files = sum(len(store.files(t)) for t in _tables())
    if not problems:
        print(
            f"store {store.root}: {n_files} live files, all present and readable with the rows the manifests list"
        )
        return 0
    _print_problems(store.root, problems, n_files, args.max_lines)
    if not args.repair:
        print(
            f"\nfirst `lnpstore check {store.root} --repair`: it drops the damaged partitions (their rows are "
            "lost anyway) so that the re-run redoes them"
        )
    return 1


def _print_problems(root, problems: list[dict], n_files: int, max_lines: int) -> None:
    by_table: dict[str, list[dict]] = {}
    for p in problems:
        by_table.setdefault(p["table"], []).append(p)
    print(f"store {root}: {len(problems)} problem(s) in {len(by_table)} table(s) ({n_files} live files)")
    for table, rows in by_table.items():
        print(f"\n{table}:")
        for p in rows[:max_lines]:
            print(f"  {p['file'] or '(table)'}: {p['problem']}")
        if len(rows) > max_lines:
            print(f"  ... and {len(rows) - max_lines} more")
        if rows[0]["redo"]:
            print(f"  fix: re-run {rows[0]['redo']} (`lnpstore run` redoes every stage)")


def _tables() -> list[str]:
    from lnpstore.store.schema import TABLES

    return list(TABLES)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="verify every live file of a store (present, readable, row counts); name what to re-run",
        description="Check each table's live files against its manifest: present, same size, Parquet "
        "footer readable with the listed row count (--deep: every page decoded). Prints, per damaged "
        "table, the command that rewrites it. Exit status 1 when something is wrong. Reads only, "
        "unless --repair.",
    )
    p.add_argument("store", help="store folder")
    p.add_argument("--deep", action="store_true", help="decode every page of every file (slower)")
    p.add_argument(
        "--repair",
        action="store_true",
        help="make the store consistent: rewrite a corrupt lnpstore.json or manifest, write missing "
        "manifests (older stores), adopt files of interrupted writes, drop damaged partitions (and the "
        "models whose outputs they were) so that re-running the stages redoes them, remove stale temporaries",
    )
    p.add_argument("--max-lines", type=int, default=10, help="files listed per table (default: %(default)s)")
    p.set_defaults(func=cmd_check)
